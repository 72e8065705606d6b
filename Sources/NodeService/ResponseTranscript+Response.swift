import Foundation

extension ResponseTranscript {
    /// What the receipt's `responseSHA256` covers, rebuilt from a saved response
    /// (`ResponseTranscript`): a chat or text completion JSON, an SSE transcript (each choice's
    /// deltas, log-probabilities and finish reason gathered by `index`), or else the file's text
    /// itself. One choice without log-probabilities gives its text, as before. `securenode verify-receipt`
    /// and `securenode proxy` use it.
    public static func text(ofResponse bytes: [UInt8]) -> String {
        struct Top: Decodable { let token: String; let logprob: Float }
        struct Entry: Decodable { let token: String; let logprob: Float; let top_logprobs: [Top]? }
        struct Logprobs: Decodable {
            let content: [Entry]?
            let tokens: [String]?
            let token_logprobs: [Float]?
            let top_logprobs: [[String: Float]]?

            var transcript: [ResponseTranscript.Token] {
                if let content {
                    return content.map { .init(token: $0.token, logprob: $0.logprob, top: ($0.top_logprobs ?? []).map { ($0.token, $0.logprob) }) }
                }
                let tokens = tokens ?? [], values = token_logprobs ?? [], tops = top_logprobs ?? []
                return tokens.indices.map { i in
                    .init(token: tokens[i], logprob: i < values.count ? values[i] : 0, top: i < tops.count ? tops[i].map { ($0.key, $0.value) } : [])
                }
            }
        }
        struct Function: Decodable { let name: String?; let arguments: String? }
        struct Call: Decodable { let index: Int?; let id: String?; let function: Function? }
        struct Message: Decodable { let content: String?; let tool_calls: [Call]? }
        struct Choice: Decodable {
            let index: Int?
            let text: String?
            let message: Message?
            let delta: Message?
            let logprobs: Logprobs?
            let finish_reason: String?
        }
        struct Body: Decodable { let choices: [Choice]? }
        var gathered: [Int: ResponseTranscript.Choice] = [:]
        func add(_ choice: Choice) {
            let index = choice.index ?? 0
            var c = gathered[index] ?? .init(index: index, text: "", finishReason: "", logprobs: nil)
            c.text += choice.message?.content ?? choice.delta?.content ?? choice.text ?? ""
            // Whole calls in a message; in a stream, a call's first delta has its id and name and
            // later deltas (same index) add to its arguments.
            for call in choice.message?.tool_calls ?? [] {
                c.toolCalls.append((call.id ?? "", call.function?.name ?? "", call.function?.arguments ?? ""))
            }
            for call in choice.delta?.tool_calls ?? [] {
                let k = call.index ?? c.toolCalls.count
                if k >= c.toolCalls.count {
                    c.toolCalls.append((call.id ?? "", call.function?.name ?? "", call.function?.arguments ?? ""))
                } else {
                    c.toolCalls[k].arguments += call.function?.arguments ?? ""
                }
            }
            if let finish = choice.finish_reason { c.finishReason = finish }
            if let lp = choice.logprobs { c.logprobs = (c.logprobs ?? []) + lp.transcript }
            gathered[index] = c
        }
        let decoder = JSONDecoder()
        if let body = try? decoder.decode(Body.self, from: Data(bytes)), let choices = body.choices, !choices.isEmpty {
            choices.forEach(add)
        } else {
            let text = String(decoding: bytes, as: UTF8.self)
            let lines = text.split(separator: "\n").filter { $0.hasPrefix("data: ") }
            guard !lines.isEmpty else { return text }
            for line in lines where line != "data: [DONE]" {
                guard let body = try? decoder.decode(Body.self, from: Data(line.dropFirst(6).utf8)) else { continue }
                (body.choices ?? []).forEach(add)
            }
        }
        return text(gathered.values.sorted { $0.index < $1.index })
    }
}
