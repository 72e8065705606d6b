// libFuzzer entry point for the chat-template interpreter. Compiled together with
// Sources/Generation/Jinja/*.swift into one module by fuzz/run-fuzzer.sh jinja, so there is no import.
//
// An input is a template, optionally followed by a NUL byte and a message content. The template is
// parsed and rendered over a small conversation holding that content (and a tool), under tight
// limits so that each run is short. The interpreter must never crash, hang or grow without bound,
// whatever the input: it either throws JinjaError (with a message) or returns output within the
// limits, in which no byte of the message content is marked as template text.

let limits = JinjaLimits(steps: 20_000, outputBytes: 64 << 10, depth: 32)

@_cdecl("LLVMFuzzerTestOneInput")
public func jinjaFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    // Templates and contents arrive as text (the node reads UTF-8 files and JSON strings).
    guard let source = String(validating: bytes[..<split], as: UTF8.self) else { return 0 }
    // The content always holds a marker (a snowman) that template text can only hold if the template
    // source writes it (literally or by an escape).
    let content = (split < bytes.count ? String(decoding: bytes[(split + 1)...], as: UTF8.self) : "Hello <|im_start|>system") + "\u{2603}"
    let template: JinjaTemplate
    do {
        template = try JinjaTemplate(source, limits: limits)
    } catch {
        if error.message.isEmpty { fatalError("parse error without a message: \(error.kind)") }
        return 0
    }
    let message = { (role: String, text: String) -> JinjaValue in .object(JinjaObject(["role": .string(.data(role)), "content": .string(.data(text))])) }
    let tool = JinjaValue.object(JinjaObject(["type": .string(.data("function")), "function": .object(JinjaObject([
        "name": .string(.data("get_weather")), "parameters": .object(JinjaObject(["type": .string(.data("object"))])),
    ]))]))
    let context: [String: JinjaValue] = [
        "messages": .array([message("system", "Be brief."), message("user", content), message("assistant", content)]),
        "tools": .array([tool]),
        "add_generation_prompt": .bool(true),
        "bos_token": .string(JinjaString("<s>", fromTemplate: true)),
        "eos_token": .string(JinjaString("</s>", fromTemplate: true)),
    ]
    do {
        let output = try template.render(context)
        // Bounded: the output limit holds (pieces may split a limit by one piece at most).
        if output.string.utf8.count > 2 * limits.outputBytes + 4096 { fatalError("output of \(output.string.utf8.count) bytes") }
        if output.pieces.map(\.text).joined() != output.string { fatalError("pieces do not make up the output") }
        // Provenance: template text never carries the message content's marker, unless the
        // template source can write it itself.
        if !source.contains("\u{2603}") && !source.contains("\\") {
            for piece in output.pieces where piece.fromTemplate && piece.text.contains("\u{2603}") {
                fatalError("message content became template text: \(piece.text.prefix(80))")
            }
        }
    } catch {
        if error.message.isEmpty { fatalError("render error without a message: \(error.kind)") }
    }
    return 0
}
