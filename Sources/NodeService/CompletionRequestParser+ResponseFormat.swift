import Generation

extension CompletionRequestParser {
    /// The grammar `response_format` asks for: none for absent, null or `{"type": "text"}`; any
    /// JSON object for `{"type": "json_object"}`; the schema's values for `{"type": "json_schema",
    /// "json_schema": {"name", "schema", "strict", "description"}}` (`JSONSchemaGrammar`; without
    /// `schema`, any JSON value). `strict` is accepted either way: the output is always held to the
    /// schema. A schema this node cannot enforce is a 400 naming the keyword or the limit.
    func responseGrammar(_ f: [String: JSONValue]) throws(APIError) -> Grammar? {
        guard let format = f["response_format"], format != .null else { return nil }
        func bad(_ message: String, code: String? = nil) -> APIError { APIError(400, message, param: "response_format", code: code) }
        guard case let .object(o) = format, case let .string(type)? = o["type"] else {
            throw bad("'response_format' must be an object with a string 'type' (text, json_object, json_schema)")
        }
        do {
            switch type {
            case "text":
                return nil
            case "json_object":
                return try JSONSchemaGrammar.anyObject(limits: schemaLimits)
            case "json_schema":
                guard case let .object(spec)? = o["json_schema"] else {
                    throw bad("'response_format.json_schema' must be an object with 'name' and 'schema'")
                }
                guard case let .string(name)? = spec["name"], !name.isEmpty, name.utf8.count <= 64 else {
                    throw bad("'response_format.json_schema.name' must be a string of 1 to 64 characters")
                }
                switch spec["strict"] {
                case nil, .null?, .bool?: break
                case let other?: throw bad("'response_format.json_schema.strict' must be a boolean, not \(other.typeName)")
                }
                return try JSONSchemaGrammar.compile(spec["schema"] ?? .bool(true), limits: schemaLimits)
            default:
                throw bad("'response_format' type \"\(type)\" is not supported (text, json_object, json_schema)")
            }
        } catch let refusal as JSONSchemaGrammar.Refusal {
            throw bad("response_format.json_schema.schema \(refusal.reason)", code: refusal.code)
        } catch let error as APIError {
            throw error
        } catch {
            throw bad("\(error)")
        }
    }
}
