import Foundation
import Generation

/// The tools of a chat request and how the answer's tool calls are read back.
///
/// `tools` are rendered by the model's chat template (only a template that renders a probe tool is
/// given tools: `ChatTemplate.toolCallFormat`); the output is parsed in the template family's
/// format (`ChatTemplate.ToolCallFormat`) into OpenAI `tool_calls`. `tool_choice: "required"` or a
/// named function holds the output, by grammar, to one call of a declared tool whose arguments
/// validate against that tool's `parameters` schema (`JSONSchemaGrammar`); `"auto"` lets the model
/// choose and parses what it wrote; `"none"` renders and parses no tools.
public struct ChatTools: Sendable {
    public let format: ChatTemplate.ToolCallFormat
    /// Declared function names (a call to another name stays text).
    public let names: [String]

    /// One parsed call.
    public struct Call: Sendable, Equatable {
        public var id: String
        public var name: String
        public var arguments: String
    }

    /// The answer text split into content (nil when nothing but calls) and calls. A call that does
    /// not parse, or names an undeclared function, leaves the text as content.
    public func parse(_ text: String, idSeed: String) -> (content: String?, calls: [Call]) {
        var calls: [Call] = []
        var content = text
        func call(_ object: JinjaValue, argumentsKey: [String]) -> Call? {
            guard case let .object(o) = object, case let .string(name)? = o["name"], names.contains(name.string) else { return nil }
            var arguments: JinjaValue = .object(JinjaObject())
            for key in argumentsKey { if let a = o[key] { arguments = a; break } }
            if case let .string(s) = arguments, let parsed = try? JinjaJSON.parse(Array(s.string.utf8)) { arguments = parsed }
            guard case .object = arguments, let json = try? JinjaJSON.dumps(arguments, separators: (",", ":")) else { return nil }
            return Call(id: Self.callID(seed: idSeed, index: calls.count, format: format), name: name.string, arguments: json)
        }
        switch format {
        case .hermes:
            var rest = Substring(text)
            var outside = ""
            while let open = rest.range(of: "<tool_call>") {
                let after = rest[open.upperBound...]
                let close = after.range(of: "</tool_call>")
                let inner = close.map { after[..<$0.lowerBound] } ?? after
                guard let value = try? JinjaJSON.parse(Array(inner.trimmingCharacters(in: .whitespacesAndNewlines).utf8)),
                      let c = call(value, argumentsKey: ["arguments", "parameters"]) else { break }
                outside += rest[..<open.lowerBound]
                calls.append(c)
                rest = close.map { after[$0.upperBound...] } ?? ""
            }
            if !calls.isEmpty { content = outside + rest }
        case .llama3JSON:
            var body = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if body.hasPrefix("<|python_tag|>") { body = String(body.dropFirst("<|python_tag|>".count)) }
            // One call, or several separated by ';' as Llama 3.2 may write them.
            let pieces = (try? JinjaJSON.parse(Array(body.utf8))) != nil ? [Substring(body)] : body.split(separator: ";")
            for piece in pieces {
                guard let value = try? JinjaJSON.parse(Array(piece.trimmingCharacters(in: .whitespacesAndNewlines).utf8)),
                      let c = call(value, argumentsKey: ["parameters", "arguments"]) else {
                    calls = []
                    break
                }
                calls.append(c)
            }
            if !calls.isEmpty { content = "" }
        case .mistral:
            var body = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if body.hasPrefix("[TOOL_CALLS]") { body = String(body.dropFirst("[TOOL_CALLS]".count)) }
            if case let .array(items)? = try? JinjaJSON.parse(Array(body.utf8)) {
                for item in items {
                    guard let c = call(item, argumentsKey: ["arguments", "parameters"]) else { calls = []; break }
                    calls.append(c)
                }
            }
            if !calls.isEmpty { content = "" }
        }
        let trimmed = content.trimmingCharacters(in: .whitespacesAndNewlines)
        return (calls.isEmpty ? text : (trimmed.isEmpty ? nil : trimmed), calls)
    }

    /// A call's id: `call_` and 24 characters for most formats; 9 alphanumerics for Mistral,
    /// whose template refuses other ids when the client sends them back. Derived from the
    /// response's id, so the receipt covers it like any other byte of the answer.
    static func callID(seed: String, index: Int, format: ChatTemplate.ToolCallFormat) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in (seed + "/\(index)").utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        var out = ""
        for _ in 0 ..< (format == .mistral ? 9 : 24) {
            h = h &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            out.append(alphabet[Int((h >> 33) % UInt64(alphabet.count))])
        }
        return format == .mistral ? out : "call_" + out
    }

    /// The text before and after a call's JSON object that the grammar writes, per format.
    static func frame(_ format: ChatTemplate.ToolCallFormat) -> (prefix: String, suffix: String, argumentsKey: String) {
        switch format {
        case .hermes: ("<tool_call>\n", "\n</tool_call>", "arguments")
        case .llama3JSON: ("", "", "parameters")
        case .mistral: ("[", "]", "arguments")
        }
    }
}

extension CompletionRequestParser {
    /// What a chat request's `tools` / `tool_choice` ask for: the tools for the template (in the
    /// request's own key order), how to parse the answer, and the grammar of a required call.
    struct ToolRequest {
        var rendered: [JinjaValue]?
        var parsing: ChatTools?
        var grammar: Grammar?
    }

    /// a-z, A-Z, 0-9, `_` and `-`: OpenAI's function names.
    static func isNameByte(_ b: UInt8) -> Bool {
        switch b {
        case 48 ... 57, 65 ... 90, 97 ... 122, 95, 45: true
        default: false
        }
    }

    func toolRequest(_ f: [String: JSONValue], body: [UInt8], template: ChatTemplate) throws(APIError) -> ToolRequest {
        let given: [JSONValue]
        switch f["tools"] {
        case nil, .null?: given = []
        case let .array(items)?: given = items
        default: throw APIError(400, "'tools' must be an array of {\"type\": \"function\", \"function\": {...}}", param: "tools")
        }
        guard given.count <= 64 else { throw APIError(400, "'tools' has \(given.count) tools; at most 64 are accepted", param: "tools") }
        // tool_choice: "none" | "auto" | "required" | {"type": "function", "function": {"name": ...}}.
        var choice = given.isEmpty ? "none" : "auto"
        var named: String?
        switch f["tool_choice"] {
        case nil, .null?: break
        case let .string(s)? where ["none", "auto", "required"].contains(s): choice = s
        case let .object(o)?:
            guard case .string("function")? = o["type"], case let .object(fn)? = o["function"], case let .string(name)? = fn["name"] else {
                throw APIError(400, "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", param: "tool_choice")
            }
            choice = "named"
            named = name
        default:
            throw APIError(400, "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", param: "tool_choice")
        }
        if given.isEmpty {
            guard choice == "none" else { throw APIError(400, "'tool_choice' \"\(named ?? choice)\" needs 'tools'", param: "tool_choice") }
            return ToolRequest()
        }
        var names: [String] = []
        var parameters: [String: JSONValue] = [:]
        for (i, tool) in given.enumerated() {
            guard case let .object(t) = tool, case .string("function")? = t["type"], case let .object(fn)? = t["function"],
                  case let .string(name)? = fn["name"] else {
                throw APIError(400, "tools[\(i)] must be {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": {...}}}", param: "tools")
            }
            guard (1 ... 64).contains(name.utf8.count), name.utf8.allSatisfy(Self.isNameByte) else {
                throw APIError(400, "tools[\(i)].function.name must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -", param: "tools")
            }
            guard !names.contains(name) else { throw APIError(400, "tools[\(i)]: the function '\(name)' is declared twice", param: "tools") }
            switch fn["parameters"] {
            case nil: parameters[name] = .object(["type": .string("object"), "properties": .object([:])])
            case let .object(p)?: parameters[name] = .object(p)
            default: throw APIError(400, "tools[\(i)].function.parameters must be a JSON Schema object", param: "tools")
            }
            names.append(name)
        }
        if choice == "none" { return ToolRequest() }
        guard let format = template.toolCallFormat else {
            throw APIError(400, "'tools' is not supported by this model's chat template (it does not render tools); serve it with a template that does (model.chat_template / --chat-template-file, e.g. Qwen2.5's for a ChatML model)",
                           param: "tools", code: "tools_unsupported")
        }
        if let named, !names.contains(named) {
            throw APIError(400, "'tool_choice' names the function '\(named)', which is not in 'tools'", param: "tool_choice")
        }
        // The tools as the template sees them: the request's JSON with its key order (as jinja2's tojson writes it).
        var rendered: [JinjaValue] = []
        if case let .object(root)? = try? JinjaJSON.parse(body, maxDepth: jsonLimits.depth), case let .array(items)? = root["tools"] {
            rendered = items
        }
        var request = ToolRequest(rendered: rendered, parsing: ChatTools(format: format, names: names))
        if choice == "required" || choice == "named" {
            let frame = ChatTools.frame(format)
            let callSchemas: [JSONValue] = (named.map { [$0] } ?? names).map { name in
                .object(["type": .string("object"), "required": .array([.string("name"), .string(frame.argumentsKey)]),
                         "properties": .object(["name": .object(["const": .string(name)]), frame.argumentsKey: parameters[name]!])])
            }
            let schema: JSONValue = callSchemas.count == 1 ? callSchemas[0] : .object(["anyOf": .array(callSchemas)])
            do {
                request.grammar = try JSONSchemaGrammar.compile(schema, prefix: frame.prefix, suffix: frame.suffix, limits: schemaLimits)
            } catch {
                throw APIError(400, "tool_choice \"\(named ?? choice)\" holds the answer to the tool's parameters schema, which cannot be enforced: \(error.reason)",
                               param: "tools", code: error.code)
            }
        }
        return request
    }
}
