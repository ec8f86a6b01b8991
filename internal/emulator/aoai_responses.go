package emulator

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// aoaiResponse is a Responses API response, keys in the order of
// aoai-responses-api.docs-sample.json (a DOC sample, not a recording).
type aoaiResponse struct {
	ID                 string             `json:"id"`
	CreatedAt          int64              `json:"created_at"`
	Error              json.RawMessage    `json:"error"`
	IncompleteDetails  json.RawMessage    `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	Metadata           map[string]string  `json:"metadata"`
	Model              string             `json:"model"`
	Object             string             `json:"object"`
	Output             []aoaiOutputItem   `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	Temperature        float64            `json:"temperature"`
	ToolChoice         string             `json:"tool_choice"`
	Tools              []any              `json:"tools"`
	TopP               float64            `json:"top_p"`
	Background         json.RawMessage    `json:"background"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	PreviousResponseID json.RawMessage    `json:"previous_response_id"`
	Reasoning          aoaiReasoningConf  `json:"reasoning"`
	ServiceTier        string             `json:"service_tier"`
	Status             string             `json:"status"`
	Text               json.RawMessage    `json:"text"`
	Truncation         string             `json:"truncation"`
	Usage              *aoaiResponseUsage `json:"usage"`
	User               json.RawMessage    `json:"user"`
	Store              bool               `json:"store"`
}

type aoaiReasoningConf struct {
	Effort          *string `json:"effort"`
	GenerateSummary *string `json:"generate_summary"`
	Summary         *string `json:"summary"`
}

type aoaiOutputItem struct {
	ID      string           `json:"id"`
	Content []aoaiOutputText `json:"content"`
	Role    string           `json:"role"`
	Status  string           `json:"status"`
	Type    string           `json:"type"`
}

type aoaiOutputText struct {
	Annotations []any  `json:"annotations"`
	Text        string `json:"text"`
	Type        string `json:"type"`
}

// aoaiResponseUsage is the usage shape of azure-contracts.md §7.3.
type aoaiResponseUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

// aoaiResponseEvent is one event of a Responses stream. INFERRED: OpenAI's
// event shapes; azure-contracts.md §7.4 found no Azure recording.
type aoaiResponseEvent struct {
	Type           string          `json:"type"`
	SequenceNumber int             `json:"sequence_number"`
	Response       *aoaiResponse   `json:"response,omitempty"`
	ItemID         string          `json:"item_id,omitempty"`
	OutputIndex    *int            `json:"output_index,omitempty"`
	ContentIndex   *int            `json:"content_index,omitempty"`
	Item           *aoaiOutputItem `json:"item,omitempty"`
	Part           *aoaiOutputText `json:"part,omitempty"`
	Delta          *string         `json:"delta,omitempty"`
	Text           *string         `json:"text,omitempty"`
}

// aoaiResponseMessages turns instructions and input into chat messages for
// counting: a string input is one user message, an item with a role is a
// message, and (INFERRED) any other item counts as its JSON.
func aoaiResponseMessages(instructions string, input json.RawMessage) ([]json.RawMessage, error) {
	var msgs []json.RawMessage
	msg := func(role string, content json.RawMessage) {
		msgs = append(msgs, aoaiMarshal(map[string]json.RawMessage{"role": aoaiMarshal(role), "content": content}))
	}
	if instructions != "" {
		msg("system", aoaiMarshal(instructions))
	}
	var s string
	if json.Unmarshal(input, &s) == nil {
		msg("user", input)
		return msgs, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(input, &items); err != nil {
		return nil, fmt.Errorf("input must be a string or an array of items: %w", err)
	}
	for _, it := range items {
		var m struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(it, &m) == nil && m.Role != "" {
			msg(m.Role, m.Content)
			continue
		}
		msg("user", aoaiMarshal(string(it)))
	}
	return msgs, nil
}

func aoaiHexID(prefix string) string {
	var sb strings.Builder
	sb.WriteString(prefix)
	for range 48 {
		sb.WriteByte("0123456789abcdef"[rand.IntN(16)])
	}
	return sb.String()
}

func (c *aoaiCall) serveResponses() {
	enc := aoaiEncodingFor(c.model)
	msgs, err := aoaiResponseMessages(c.body.Instructions, c.body.Input)
	if err != nil {
		c.writeBadRequest(err)
		return
	}
	promptTokens, prompt, err := aoaiChatPrompt(enc.codec, msgs)
	if err != nil {
		c.writeBadRequest(err)
		return
	}
	if c.filtered(prompt, promptTokens) {
		return
	}
	r := c.a.reply(enc, c.model, prompt, c.limit())
	var u aoaiResponseUsage
	u.InputTokens = promptTokens
	u.InputTokensDetails.CachedTokens = c.a.cachedTokens(prompt, promptTokens)
	u.OutputTokens = r.Completion()
	u.OutputTokensDetails.ReasoningTokens = r.Reasoning
	u.TotalTokens = promptTokens + r.Completion()

	var instructions *string
	if c.body.Instructions != "" {
		instructions = &c.body.Instructions
	}
	final := &aoaiResponse{
		ID: aoaiHexID("resp_"), CreatedAt: time.Now().Unix(),
		Error: json.RawMessage("null"), IncompleteDetails: json.RawMessage("null"),
		Instructions: instructions, Metadata: map[string]string{}, Model: c.model, Object: "response",
		Output: []aoaiOutputItem{{
			ID:      aoaiHexID("msg_"),
			Content: []aoaiOutputText{{Annotations: []any{}, Text: r.Text, Type: "output_text"}},
			Role:    "assistant", Status: "completed", Type: "message",
		}},
		ParallelToolCalls: true, Temperature: 1, ToolChoice: "auto", Tools: []any{}, TopP: 1,
		Background: json.RawMessage("null"), MaxOutputTokens: c.body.MaxOutputTokens,
		PreviousResponseID: json.RawMessage("null"), ServiceTier: "default", Status: "completed",
		Text: json.RawMessage(`{"format":{"type":"text"}}`), Truncation: "disabled",
		Usage: &u, User: json.RawMessage("null"), Store: true,
	}
	terminal := "response.completed"
	if r.Finish == "length" {
		// INFERRED: OpenAI marks a response cut by max_output_tokens incomplete.
		final.Status, terminal = "incomplete", "response.incomplete"
		final.IncompleteDetails = json.RawMessage(`{"reason":"max_output_tokens"}`)
		final.Output[0].Status = "incomplete"
	}
	if !c.body.Stream {
		if c.wait(c.paceTotal(r.Visible())) != nil {
			return
		}
		c.writeSuccess(final, u.TotalTokens)
		return
	}
	c.streamResponse(final, r, terminal)
}

// streamResponse sends response.created, response.in_progress, the output
// item and part openings, one response.output_text.delta per token, their
// closings, and the terminal event carrying the usage. There is no [DONE].
func (c *aoaiCall) streamResponse(final *aoaiResponse, r aoaiReply, terminal string) {
	s := c.startSSE(final.Usage.TotalTokens)
	seq := 0
	send := func(ev aoaiResponseEvent, token bool) error {
		ev.SequenceNumber = seq
		seq++
		if token {
			return s.token(ev.Type, ev)
		}
		return s.send(ev.Type, ev)
	}
	pending := *final
	pending.Status, pending.Usage, pending.Output = "in_progress", nil, []aoaiOutputItem{}
	pending.IncompleteDetails = json.RawMessage("null")
	item := final.Output[0]
	openItem := item
	openItem.Status, openItem.Content = "in_progress", []aoaiOutputText{}
	zero := 0
	emptyPart := aoaiOutputText{Annotations: []any{}, Type: "output_text"}
	donePart := item.Content[0]

	steps := []aoaiResponseEvent{
		{Type: "response.created", Response: &pending},
		{Type: "response.in_progress", Response: &pending},
		{Type: "response.output_item.added", OutputIndex: &zero, Item: &openItem},
		{Type: "response.content_part.added", ItemID: item.ID, OutputIndex: &zero, ContentIndex: &zero, Part: &emptyPart},
	}
	for _, ev := range steps {
		if send(ev, false) != nil {
			return
		}
	}
	for _, t := range r.Tokens {
		if send(aoaiResponseEvent{Type: "response.output_text.delta", ItemID: item.ID, OutputIndex: &zero, ContentIndex: &zero, Delta: &t}, true) != nil {
			return
		}
	}
	steps = []aoaiResponseEvent{
		{Type: "response.output_text.done", ItemID: item.ID, OutputIndex: &zero, ContentIndex: &zero, Text: &r.Text},
		{Type: "response.content_part.done", ItemID: item.ID, OutputIndex: &zero, ContentIndex: &zero, Part: &donePart},
		{Type: "response.output_item.done", OutputIndex: &zero, Item: &item},
		{Type: terminal, Response: final},
	}
	for _, ev := range steps {
		if send(ev, false) != nil {
			return
		}
	}
	s.done(false)
}
