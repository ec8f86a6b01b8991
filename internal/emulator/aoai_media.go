package emulator

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// aoaiEmbeddings is an embeddings response, keys in the recorded order
// (aoai-embeddings.recorded.json).
type aoaiEmbeddings struct {
	Object string          `json:"object"`
	Data   []aoaiEmbedding `json:"data"`
	Model  string          `json:"model"`
	Usage  struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

type aoaiEmbedding struct {
	Object    string          `json:"object"`
	Index     int             `json:"index"`
	Embedding json.RawMessage `json:"embedding"`
}

// aoaiEmbeddingDims is a model's native vector size (INFERRED from the
// OpenAI model cards; the recording asks for 1).
func aoaiEmbeddingDims(model string) int {
	if strings.Contains(model, "large") {
		return 3072
	}
	return 1536
}

// aoaiVector is the deterministic unit vector of item: a native-size
// vector, cut to dims and renormalised as the text-embedding-3 models do,
// signed so its first value is positive (the recording shows [1.0]).
func aoaiVector(item string, native, dims int) []float32 {
	rng := rand.New(rand.NewPCG(aoaiHash(item), 0xe5b))
	v := make([]float64, native)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	v = v[:dims]
	var norm float64
	for _, x := range v {
		norm += x * x
	}
	norm = math.Sqrt(norm)
	if v[0] < 0 {
		norm = -norm
	}
	out := make([]float32, dims)
	for i, x := range v {
		out[i] = float32(x / norm)
	}
	return out
}

// aoaiFloats writes floats as the recording does, always with a decimal
// point or exponent ("1.0", not "1").
func aoaiFloats(v []float32) json.RawMessage {
	var sb strings.Builder
	sb.WriteByte('[')
	for i, x := range v {
		if i > 0 {
			sb.WriteByte(',')
		}
		s := strconv.FormatFloat(float64(x), 'g', -1, 32)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		sb.WriteString(s)
	}
	sb.WriteByte(']')
	return json.RawMessage(sb.String())
}

// aoaiBase64 is the encoding_format "base64" form: little-endian float32
// values (INFERRED from the OpenAI clients, which decode it so).
func aoaiBase64(v []float32) json.RawMessage {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return aoaiMarshal(base64.StdEncoding.EncodeToString(b))
}

func (c *aoaiCall) serveEmbeddings() {
	enc := aoaiEncodingFor(c.model)
	tokens, items, err := aoaiPromptList(enc.codec, c.body.Input)
	if err != nil {
		c.writeBadRequest(err)
		return
	}
	native, dims := aoaiEmbeddingDims(c.model), aoaiEmbeddingDims(c.model)
	if c.body.Dimensions != nil {
		dims = *c.body.Dimensions
	}
	if dims < 1 || dims > native {
		// INFERRED wording.
		c.writeJSONError(http.StatusBadRequest, aoaiOpenAIError(
			fmt.Sprintf("dimensions must be between 1 and %d.", native), "invalid_request_error", "dimensions", nil))
		return
	}
	out := aoaiEmbeddings{Object: "list", Model: c.model}
	for i, it := range items {
		v := aoaiVector(it, native, dims)
		e := aoaiEmbedding{Object: "embedding", Index: i, Embedding: aoaiFloats(v)}
		if c.body.EncodingFormat == "base64" {
			e.Embedding = aoaiBase64(v)
		}
		out.Data = append(out.Data, e)
	}
	out.Usage.PromptTokens, out.Usage.TotalTokens = tokens, tokens
	// The recorded body is indented by two spaces and ends in a newline:
	// that is the only layout giving its Content-Length of 241.
	body, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("emulator: marshal embeddings: %v", err)) // only our own types
	}
	c.writeSuccessBody(append(body, '\n'), tokens)
}

// aoaiPNG is a tiny image coloured by seed.
func aoaiPNG(seed uint64) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	col := color.RGBA{R: uint8(seed), G: uint8(seed >> 8), B: uint8(seed >> 16), A: 255}
	for x := range 4 {
		for y := range 4 {
			img.Set(x, y, col)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(fmt.Sprintf("emulator: encode png: %v", err)) // writing to memory cannot fail
	}
	return buf.Bytes()
}

// serveImages answers images/generations with small b64_json images.
// INFERRED shape: OpenAI's; no Azure recording.
func (c *aoaiCall) serveImages() {
	var prompt string
	if err := json.Unmarshal(c.body.Prompt, &prompt); err != nil {
		c.writeBadRequest(err)
		return
	}
	type picture struct {
		B64JSON       string `json:"b64_json"`
		RevisedPrompt string `json:"revised_prompt"`
	}
	out := struct {
		Created int64     `json:"created"`
		Data    []picture `json:"data"`
	}{Created: time.Now().Unix()}
	for i := range min(max(c.body.N, 1), 10) {
		pic := aoaiPNG(aoaiHash(prompt) + uint64(i))
		out.Data = append(out.Data, picture{B64JSON: base64.StdEncoding.EncodeToString(pic), RevisedPrompt: prompt})
	}
	c.writeSuccess(out, 0)
}

// serveSpeech answers audio/speech with MPEG audio bytes: an ID3 header and
// silent frames, more for longer input. INFERRED: no recording.
func (c *aoaiCall) serveSpeech() {
	var input string
	if err := json.Unmarshal(c.body.Input, &input); err != nil {
		c.writeBadRequest(err)
		return
	}
	var buf bytes.Buffer
	buf.WriteString("ID3\x04\x00\x00\x00\x00\x00\x00")
	frame := make([]byte, 417) // MPEG-1 Layer III, 128 kbit/s, 44.1 kHz
	copy(frame, []byte{0xFF, 0xFB, 0x90, 0x64})
	for range 1 + len(input)/16 {
		buf.Write(frame)
	}
	c.setSuccessHeaders(0)
	c.writeBody(http.StatusOK, "audio/mpeg", buf.Bytes())
}

// serveTranscription answers audio/transcriptions with a text made up from
// the upload. INFERRED: no recording.
func (c *aoaiCall) serveTranscription() {
	text := fmt.Sprintf("Transcript of %s: %d bytes of audio.", c.body.fileName, len(c.body.file))
	c.setSuccessHeaders(0)
	if c.body.textFormat == "text" {
		c.writeBody(http.StatusOK, "text/plain; charset=utf-8", []byte(text))
		return
	}
	c.writeBody(http.StatusOK, "application/json", aoaiMarshal(map[string]string{"text": text}))
}

// serveModels lists the deployments as models. INFERRED: OpenAI's list
// shape; Azure's v1 model objects carry more fields.
func (c *aoaiCall) serveModels() {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	names := make([]string, 0, len(c.a.cfg.Deployments))
	for d := range c.a.cfg.Deployments {
		names = append(names, d)
	}
	slices.Sort(names)
	for _, d := range names {
		out.Data = append(out.Data, model{ID: d, Object: "model", Created: c.start.Unix(), OwnedBy: "system"})
	}
	c.setGatewayHeaders()
	c.w.Header().Set("X-Request-ID", c.xRequestID)
	c.writeBody(http.StatusOK, "application/json", aoaiMarshal(out))
}
