import GGUFTestSupport
import ModelFormat
import Testing
import Generation
@testable import Inference

@Suite("Generation loop", .enabled(if: TestPaths.runModelTests, TestPaths.modelMissing))
struct GeneratorTests {
    /// A stop string cuts the text before it, and the streamed pieces add up to the result.
    @Test func stopsAtStopStringAndStreams() throws {
        let generator = try Generator(model: RealModel.model(), tokenizer: RealModel.tokenizer())
        let prompt = try generator.tokenizer.encode("The capital of France is", addSpecial: true, parseSpecial: true, maxWordBytes: Tokenizer.defaultMaxWordBytes)
        var streamed = ""
        let result = try generator.generate(promptIDs: prompt, options: GenerationOptions(maxTokens: 16, stopStrings: ["\n\n"])) {
            streamed += $0
        }
        // llama.cpp's greedy continuation is " Paris.\n\nThe United States ..." (the reference file).
        #expect(result.text == " Paris.")
        #expect(result.stopReason == .stopString)
        #expect(streamed == result.text)
        #expect(result.outputIDs.prefix(2) == [7042, 30])
    }

    /// A chat turn ends at the end-of-turn token, which is not part of the output. (With the
    /// template's own default system message SmolLM2-135M answers this question with a list of
    /// French words, in llama.cpp's chat completion too; with this system message it answers.)
    @Test func chatStopsAtEndOfTurn() throws {
        let file = try RealModel.file()
        let tokenizer = try RealModel.tokenizer()
        let source = try #require(file.string("tokenizer.chat_template"))
        let template = try #require(ChatTemplate(template: source))
        let prompt = try tokenizer.encode(try template.render([ChatMessage(role: "system", content: "You are a helpful assistant."),
                                                                                       ChatMessage(role: "user", content: "What is the capital of France?")]),
                                          maxWordBytes: Tokenizer.defaultMaxWordBytes)
        let generator = try Generator(model: RealModel.model(), tokenizer: tokenizer)
        let result = try generator.generate(promptIDs: prompt, options: GenerationOptions(maxTokens: 48))
        #expect(result.stopReason == .endOfGeneration)
        #expect(result.text.contains("Paris"))
        #expect(!result.outputIDs.contains { tokenizer.endOfGeneration.contains($0) })
    }

    @Test func refusesMoreThanTheModelsContext() throws {
        let generator = try Generator(model: RealModel.model(), tokenizer: RealModel.tokenizer())
        #expect(throws: InferenceError(.contextOverflow, "")) {
            try generator.generate(promptIDs: [504], options: GenerationOptions(maxTokens: 100_000))
        }
    }
}

@Suite struct TinyGenerationTests {
    @Test func untiedOutputAndMaxTokens() throws {
        var tiny = TinyModel()
        tiny.builder.addTensor("output.weight", .f32, [32, TinyModel.tokens.count])
        let model = try tiny.model()
        #expect(!model.weights.isOutputTied)
        let generator = try Generator(model: model, tokenizer: Tokenizer(file: tiny.file()))
        let result = try generator.generate(promptIDs: [3, 4], options: GenerationOptions(maxTokens: 5, stopAtEndOfGeneration: false))
        #expect(result.outputIDs.count == 5 && result.stopReason == .length)
        #expect(throws: InferenceError(.invalidArgument, "")) {
            try generator.generate(promptIDs: [], options: GenerationOptions())
        }
    }
}
