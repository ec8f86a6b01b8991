// A streamed chat through the gateway with the npm openai package's
// AzureOpenAI client, as a user's Node.js program would make it.
// Prints one JSON line: the text, the chunk count and the usage it saw.
const path = require("path");
const { AzureOpenAI } = require(path.join(process.env.TAPLINE_NODE_MODULES, "openai"));

async function main() {
  const client = new AzureOpenAI({
    endpoint: process.env.GATEWAY_URL,
    apiKey: process.env.GATEWAY_KEY,
    apiVersion: "2024-10-21",
    deployment: "gpt-4o",
    maxRetries: 0,
  });
  const stream = await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Write two sentences about harbours" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", chunks = 0, usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) if (c.delta && c.delta.content) text += c.delta.content;
  }
  console.log(JSON.stringify({ text, chunks, usage }));
}

main().catch((err) => { console.error(String(err && err.stack || err)); process.exit(1); });
