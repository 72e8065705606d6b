import ArgumentParser
import Foundation
import Generation
import Inference
import ModelFormat

/// `securenode generate`: verify a signed model, load its verified GGUF bytes, and generate text.
struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Verify a signed model and generate text from a prompt.",
        discussion: """
            The model is verified exactly as `model verify` does and only its verified bytes are run. \
            A raw --prompt is tokenized as llama.cpp does for completions (control tokens written as \
            text, such as <|im_start|>, are parsed; BOS only if the model asks for it). With --chat the \
            prompt is one user message rendered with the model's chat template; its text is never parsed \
            for control tokens. Temperature 0 (the default) is greedy decoding.
            """
    )

    @Option(help: "The model directory (holding one .gguf file), or a single GGUF file.")
    var model: String

    @Option(help: "The signature bundle (model-signing's model.sig).")
    var signature: String

    @OptionGroup var trust: TrustOptions

    @Option(help: "The prompt text.")
    var prompt: String

    @Flag(help: "Render the prompt as a user message with the model's chat template.")
    var chat = false

    @Option(name: .customLong("chat-template-file"), help: "With --chat: a Jinja chat template file used instead of the model's tokenizer.chat_template.")
    var chatTemplateFile: String?

    @Option(name: .customLong("system"), help: "With --chat: a system message (else the template's default, if any).")
    var systemMessage: String?

    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.")
    var maxTokens = 128

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0: all).")
    var topK = 40

    @Option(name: .customLong("top-p"), help: "Nucleus sampling threshold (1: off).")
    var topP: Float = 0.95

    @Option(name: .customLong("min-p"), help: "Drop tokens below this fraction of the top probability (0: off).")
    var minP: Float = 0.05

    @Option(name: .customLong("repeat-penalty"), help: "Repetition penalty over the last 64 tokens (1: off).")
    var repeatPenalty: Float = 1

    @Option(help: "Seed of the sampler's PRNG (same seed, same output).")
    var seed: UInt64 = 0

    @Option(name: .customLong("stop"), help: "Stop before this string (repeatable).")
    var stop: [String] = []

    @Flag(help: "Print one JSON line: {\"prompt_ids\": [...], \"output_ids\": [...], \"text\": \"...\"}.")
    var json = false

    @Flag(help: "Bit-exact kernels for the prompt too (llama.cpp's CPU arithmetic), never BLAS (slower prefill).")
    var exact = false

    @Option(help: "How generated tokens are evaluated: one-token (the default: llama.cpp's one-token kernels, bit for bit) or prompt-rows (each as the last row of a prompt holding the text so far, as `serve` does by default with several slots).")
    var decoding: Decoding = .oneToken

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be >= 0") }
        if systemMessage != nil && !chat { throw ValidationError("--system needs --chat") }
        if chatTemplateFile != nil && !chat { throw ValidationError("--chat-template-file needs --chat") }
    }

    func run() async throws {
        if !exact { OpenBLASCoreType.reexecIfMisdetected() }
        try await reportingFailures {
            let loaded = try await LoadedModel.open(model: model, signature: signature, trust: try trust.anchor())
            let llama = try LlamaModel(file: loaded.gguf)
            let tokenizer = try Tokenizer(file: loaded.gguf)
            let generator = try Generator(model: llama, tokenizer: tokenizer, prefill: exact ? .exact : .default,
                                          decoding: decoding)
            let promptIDs: [Int]
            if chat {
                let source = try chatTemplateFile.map { try FileText.read($0, what: "chat template") } ?? loaded.gguf.string("tokenizer.chat_template")
                guard let template = try ChatTemplate.forModel(source: source, tokenizer: tokenizer) else {
                    throw CLIFailure("the model has no tokenizer.chat_template: give --chat-template-file")
                }
                var messages: [ChatMessage] = []
                if let systemMessage { messages.append(ChatMessage(role: "system", content: systemMessage)) }
                messages.append(ChatMessage(role: "user", content: prompt))
                promptIDs = try tokenizer.encode(try template.render(messages), maxWordBytes: Tokenizer.defaultMaxWordBytes)
            } else {
                promptIDs = try tokenizer.encode(prompt, addSpecial: true, parseSpecial: true, maxWordBytes: Tokenizer.defaultMaxWordBytes)
            }
            let options = GenerationOptions(
                maxTokens: maxTokens,
                sampling: SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP,
                                             repetitionPenalty: repeatPenalty, seed: seed),
                stopStrings: stop)
            let result = try generator.generate(promptIDs: promptIDs, options: options) { piece in
                if !json {
                    FileHandle.standardOutput.write(Data(piece.utf8))
                }
            }
            if json {
                let object: [String: Any] = ["prompt_ids": result.promptIDs, "output_ids": result.outputIDs, "text": result.text]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("")
            }
        }
    }
}

extension Decoding: ExpressibleByArgument {}
