package usage

import (
	"strings"

	"github.com/tapline/tapline/internal/record"
)

// This file reads the JSON of responses and stream chunks into a
// collector, with a scanner. Every method consumes exactly one value.

// usageMember describes the top-level "usage" member of a chunk, for
// DropUsage.
type usageMember struct {
	present    bool // the chunk has a top-level "usage" member
	object     bool // whose value is an object (not null)
	choices    bool // the chunk has a non-empty choices array
	wellFormed bool // the chunk is one well-formed JSON object
	keyAt      int  // offset of the member's key
	valEnd     int  // offset just past its value
}

// chunk reads a chat, completions or embeddings response, or one stream
// chunk of the first two: id, model, usage, choices, prompt filter results
// and error. It reports whether the chunk carried output, and where its
// usage member is.
//
// With stream_options.include_usage, Azure sends "usage":null on every
// chunk and the usage in a last chunk with "choices":[]; the first chunk,
// prompt filter results only, also has "choices":[] but no usage member
// (azure-contracts.md §7.4).
func (c *collector) chunk(js string) (output bool, um usageMember) {
	sc := &scanner{s: js}
	isObject := sc.object(func(key string, keyAt int) {
		switch key {
		case "id":
			c.setID(sc)
		case "model":
			c.setModel(sc)
		case "choices":
			out, n := c.choices(sc)
			output = output || out
			um.choices = um.choices || n > 0
		case "prompt_filter_results", "prompt_annotations":
			c.promptFilters(sc)
		case "usage":
			if um.present { // a duplicate key: the first one is the member
				c.setUsage(sc)
				return
			}
			um.present, um.object, um.keyAt = true, sc.peek() == '{', keyAt
			c.setUsage(sc)
			um.valEnd = sc.i
		case "error":
			c.setError(sc, true)
		default:
			sc.skip()
		}
	})
	sc.ws()
	um.wellFormed = isObject && !sc.failed && sc.i == len(js)
	return output, um
}

// choices reads a choices array, of a response or of a stream chunk:
// finish reasons, filter verdicts, and the output of choice 0 (message or
// delta content and refusal, completions text). It reports whether any
// choice carried output (text, a refusal or a tool call), and how many
// choices there were.
func (c *collector) choices(sc *scanner) (output bool, n int) {
	n = sc.array(func(pos int) {
		idx := pos
		var finish, msg, txt string
		var finishEsc, txtEsc, hasTxt bool
		// Azure orders members alphabetically, so "index" comes after
		// "delta": keep the parts and use them once the index is known.
		sc.object(func(key string, _ int) {
			switch key {
			case "index":
				if v, ok := sc.int(); ok {
					idx = v
				}
			case "finish_reason":
				finish, finishEsc, _ = sc.str()
			case "message", "delta":
				msg = sc.span()
			case "text":
				txt, txtEsc, hasTxt = sc.str()
			case "content_filter_results":
				c.filterResults(sc)
			default:
				sc.skip()
			}
		})
		if sc.failed {
			return
		}
		if finish != "" {
			if finishEsc {
				finish = text(finish, true)
			}
			c.setFinish(idx, finish)
		}
		if hasTxt && txt != "" {
			output = true
			if idx == 0 {
				c.appendRaw(txt, txtEsc)
			}
		}
		if msg != "" && c.message(&scanner{s: msg}, idx == 0) {
			output = true
		}
	})
	return output, n
}

// message reads a chat message or delta. keep says whether its text is the
// output text (choice 0). It reports whether the message carried output.
func (c *collector) message(sc *scanner, keep bool) (output bool) {
	add := func(raw string, escaped, ok bool) {
		if ok && raw != "" {
			output = true
			if keep {
				c.appendRaw(raw, escaped)
			}
		}
	}
	sc.object(func(key string, _ int) {
		switch key {
		case "content", "refusal":
			if sc.peek() != '[' {
				add(sc.str())
				return
			}
			sc.array(func(int) { // content parts: [{type:"text", text}]
				sc.object(func(k string, _ int) {
					if k == "text" {
						add(sc.str())
						return
					}
					sc.skip()
				})
			})
		case "tool_calls":
			if sc.array(func(int) { sc.skip() }) > 0 {
				output = true
			}
		case "function_call":
			output = output || sc.peek() == '{'
			sc.skip()
		default:
			sc.skip()
		}
	})
	return output
}

// appendRaw appends a raw JSON string to the output text.
func (c *collector) appendRaw(raw string, escaped bool) {
	if !escaped {
		c.appendText(raw)
		return
	}
	c.scratch = unescape(c.scratch[:0], raw)
	c.appendText(bytesString(c.scratch))
}

func (c *collector) setModel(sc *scanner) {
	if raw, escaped, ok := sc.str(); ok && raw != "" && c.model == "" {
		c.model = text(raw, escaped)
	}
}

func (c *collector) setID(sc *scanner) {
	if raw, escaped, ok := sc.str(); ok && raw != "" && c.id == "" {
		c.id = text(raw, escaped)
	}
}

// setUsage reads a usage object in either shape: chat and completions
// (prompt_tokens, completion_tokens, *_details) or the Responses API
// (input_tokens, output_tokens, *_details). A later usage object replaces
// an earlier one.
func (c *collector) setUsage(sc *scanner) {
	var u record.Usage
	var found, total bool
	count := func(dst *int) bool {
		n, ok := sc.int()
		if ok {
			*dst, found = n, true
		}
		return ok
	}
	isObject := sc.object(func(key string, _ int) {
		switch key {
		case "prompt_tokens", "input_tokens":
			count(&u.PromptTokens)
		case "completion_tokens", "output_tokens":
			count(&u.CompletionTokens)
		case "total_tokens":
			total = count(&u.TotalTokens)
		case "prompt_tokens_details", "input_tokens_details":
			member(sc, "cached_tokens", &u.CachedTokens)
		case "completion_tokens_details", "output_tokens_details":
			member(sc, "reasoning_tokens", &u.ReasoningTokens)
		default:
			sc.skip()
		}
	})
	if !isObject || !found || sc.failed {
		return
	}
	if !total {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	c.usage, c.hasUsage = u, true
}

// member reads the number name from the object that comes next.
func member(sc *scanner, name string, dst *int) {
	sc.object(func(key string, _ int) {
		if key != name {
			sc.skip()
			return
		}
		if n, ok := sc.int(); ok {
			*dst = n
		}
	})
}

// setError reads an OpenAI-shaped error object {code, message, type}.
// useType says whether a missing code falls back to the type (not for a
// Responses API "error" event, whose type is always "error"). The first
// error wins.
func (c *collector) setError(sc *scanner, useType bool) {
	var e record.Error
	var typ string
	var found bool
	sc.object(func(key string, _ int) {
		switch key {
		case "code":
			if sc.peek() == '"' {
				raw, escaped, _ := sc.str()
				e.Code, found = text(raw, escaped), true
			} else if t, ok := sc.number(); ok {
				e.Code, found = strings.Clone(t), true
			}
		case "message":
			if raw, escaped, ok := sc.str(); ok {
				e.Message, found = text(raw, escaped), true
			}
		case "type":
			if raw, escaped, ok := sc.str(); ok {
				typ = text(raw, escaped)
			}
		case "innererror":
			sc.object(func(key string, _ int) {
				switch key {
				case "content_filter_result", "content_filter_results":
					// Azure names it content_filter_result, singular,
					// inside innererror (azure-contracts.md §7.5).
					c.filterResults(sc)
				default:
					sc.skip()
				}
			})
		default:
			sc.skip()
		}
	})
	if !found || c.err != nil {
		return
	}
	if e.Code == "" && useType {
		e.Code = typ
	}
	c.err = &e
}

// promptFilters reads prompt_filter_results (or prompt_annotations, its
// name before api-version 2023-06-01-preview): [{prompt_index,
// content_filter_results}].
func (c *collector) promptFilters(sc *scanner) {
	n := sc.array(func(int) {
		sc.object(func(key string, _ int) {
			if key == "content_filter_results" {
				c.filterResults(sc)
				return
			}
			sc.skip()
		})
	})
	if n >= 0 {
		c.filterSeen = true
	}
}

// filterResults reads one content_filter_results object: category ->
// {filtered, severity} or {filtered, detected}. A category counts when it
// was filtered or detected.
func (c *collector) filterResults(sc *scanner) {
	raw, sawTrue, ok := sc.objectSpan()
	if !ok {
		return
	}
	c.filterSeen = true
	// Nearly every chunk of a stream carries an all-safe verdict; without a
	// true anywhere there is nothing to record.
	if !sawTrue {
		return
	}
	sub := &scanner{s: raw}
	sub.object(func(category string, _ int) {
		var filtered, detected bool
		sub.object(func(key string, _ int) {
			switch key {
			case "filtered":
				filtered = sub.literal() == 't'
			case "detected":
				detected = sub.literal() == 't'
			default:
				sub.skip()
			}
		})
		if filtered {
			c.filtered = true
		}
		if filtered || detected {
			c.addCategory(category)
		}
	})
}

// responseObject reads a Responses API response object, the body of a
// non-streamed call or the "response" member of a stream event. withText
// says whether to read the output text from output[] (a stream assembles
// it from deltas instead).
func (c *collector) responseObject(sc *scanner, withText bool) {
	sc.object(func(key string, _ int) {
		switch key {
		case "id":
			c.setID(sc)
		case "model":
			c.setModel(sc)
		case "usage":
			c.setUsage(sc)
		case "status":
			if raw, escaped, ok := sc.str(); ok && raw != "" && !escaped {
				c.status = intern(raw)
			}
		case "incomplete_details":
			sc.object(func(key string, _ int) {
				if key != "reason" {
					sc.skip()
					return
				}
				if raw, escaped, ok := sc.str(); ok && raw != "" && !escaped {
					c.incomplete = intern(raw)
				}
			})
		case "error":
			c.setError(sc, true)
		case "output":
			if withText {
				c.responseOutput(sc)
			} else {
				sc.skip()
			}
		default:
			sc.skip()
		}
	})
}

// responseOutput appends the text of every output_text and refusal part of
// the message items in a Responses API output array.
func (c *collector) responseOutput(sc *scanner) {
	sc.array(func(int) {
		sc.object(func(key string, _ int) {
			if key != "content" {
				sc.skip()
				return
			}
			sc.array(func(int) {
				var typ, txt, refusal string
				var txtEsc, refusalEsc bool
				sc.object(func(key string, _ int) {
					switch key {
					case "type":
						typ, _, _ = sc.str()
					case "text":
						txt, txtEsc, _ = sc.str()
					case "refusal":
						refusal, refusalEsc, _ = sc.str()
					default:
						sc.skip()
					}
				})
				switch typ {
				case "output_text":
					c.appendRaw(txt, txtEsc)
				case "refusal":
					c.appendRaw(refusal, refusalEsc)
				}
			})
		})
	})
}

// responseEvent reads one Responses API stream event, named by its event:
// field or else by its data's "type". It reports whether the event carried
// output and whether it was the terminal one. The event names are
// OpenAI's (response.created, response.output_text.delta,
// response.completed, ...); no Azure recording exists (azure-contracts.md
// §7.4).
func (c *collector) responseEvent(name, js string) (output, done bool) {
	sc := &scanner{s: js}
	var delta string
	var deltaEsc, hasDelta bool
	sc.object(func(key string, _ int) {
		switch key {
		case "type":
			if raw, _, ok := sc.str(); ok && name == "" {
				name = raw
			}
		case "delta":
			delta, deltaEsc, hasDelta = sc.str()
		case "response": // response.created, .in_progress, .completed, ...
			c.responseObject(sc, false)
		default:
			sc.skip()
		}
	})
	switch name {
	case "response.output_text.delta", "response.refusal.delta":
		if hasDelta && delta != "" {
			c.appendRaw(delta, deltaEsc)
			output = true
		}
	case "response.function_call_arguments.delta":
		output = hasDelta && delta != ""
	case "response.completed", "response.failed", "response.incomplete":
		done = true
	case "error":
		c.setError(&scanner{s: js}, false)
	}
	return output, done
}
