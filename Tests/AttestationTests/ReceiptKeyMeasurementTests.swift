import Attestation
import Testing

/// The receipt-key event's canonical bytes, with and without an operator's chat template and the
/// kept-answers decoding.
struct ReceiptKeyMeasurementTests {
    let key = String(repeating: "ab", count: 32)
    let template = String(repeating: "cd", count: 32)

    @Test func keepsTheCanonicalBytesOfEventsWithoutATemplate() throws {
        // Logs written before templates were measured must parse and replay unchanged.
        let bytes = Array(#"{"event":"securenode.receipt-key.v1","keySHA256":"\#(key)","profile":"swtpm-dev"}"#.utf8)
        let event = try ReceiptKeyMeasurement(canonical: bytes)
        #expect(event.chatTemplateSHA256 == nil)
        #expect(event.canonicalBytes == bytes)
    }

    @Test func roundTripsAnOperatorsTemplate() throws {
        let event = ReceiptKeyMeasurement(keySHA256: key, profile: "swtpm-dev", chatTemplateSHA256: template.uppercased())
        let text = String(decoding: event.canonicalBytes, as: UTF8.self)
        #expect(text == #"{"chatTemplateSHA256":"\#(template)","event":"securenode.receipt-key.v1","keySHA256":"\#(key)","profile":"swtpm-dev"}"#)
        #expect(try ReceiptKeyMeasurement(canonical: event.canonicalBytes) == event)
    }

    @Test func refusesNonCanonicalTemplateField() throws {
        // The same fields in another order (or case) would replay to another PCR value: refused.
        for text in [#"{"event":"securenode.receipt-key.v1","chatTemplateSHA256":"\#(template)","keySHA256":"\#(key)","profile":"p"}"#,
                     #"{"chatTemplateSHA256":"\#(template.uppercased())","event":"securenode.receipt-key.v1","keySHA256":"\#(key)","profile":"p"}"#,
                     #"{"chatTemplateSHA256":7,"event":"securenode.receipt-key.v1","keySHA256":"\#(key)","profile":"p"}"#] {
            #expect(throws: AttestationError.self) { try ReceiptKeyMeasurement(canonical: Array(text.utf8)) }
        }
    }

    /// A process that decodes as prompt rows (`limits.prompt_cache_answers`) says so in the event,
    /// after the template and before the event type; a process that does not keeps the old bytes.
    @Test func roundTripsTheKeptAnswersDecoding() throws {
        let event = ReceiptKeyMeasurement(keySHA256: key, profile: "swtpm-dev", chatTemplateSHA256: template, decodesAsPromptRows: true)
        let text = String(decoding: event.canonicalBytes, as: UTF8.self)
        #expect(text == #"{"chatTemplateSHA256":"\#(template)","decoding":"prompt-rows","event":"securenode.receipt-key.v1","keySHA256":"\#(key)","profile":"swtpm-dev"}"#)
        #expect(try ReceiptKeyMeasurement(canonical: event.canonicalBytes) == event)
        let plain = ReceiptKeyMeasurement(keySHA256: key, profile: "swtpm-dev", decodesAsPromptRows: true)
        #expect(try ReceiptKeyMeasurement(canonical: plain.canonicalBytes).decodesAsPromptRows)
        #expect(!String(decoding: ReceiptKeyMeasurement(keySHA256: key, profile: "p").canonicalBytes, as: UTF8.self).contains("decoding"))
    }

    /// An unknown decoding, one out of order, or of another type is refused: a verifier must not
    /// read a mode the node did not measure.
    @Test func refusesAnUnknownOrNonCanonicalDecoding() throws {
        for text in [#"{"decoding":"exact","event":"securenode.receipt-key.v1","keySHA256":"\#(key)","profile":"p"}"#,
                     #"{"decoding":"","event":"securenode.receipt-key.v1","keySHA256":"\#(key)","profile":"p"}"#,
                     #"{"decoding":true,"event":"securenode.receipt-key.v1","keySHA256":"\#(key)","profile":"p"}"#,
                     #"{"event":"securenode.receipt-key.v1","decoding":"prompt-rows","keySHA256":"\#(key)","profile":"p"}"#,
                     #"{"decoding":"prompt-rows","chatTemplateSHA256":"\#(template)","event":"securenode.receipt-key.v1","keySHA256":"\#(key)","profile":"p"}"#] {
            #expect(throws: AttestationError.self) { try ReceiptKeyMeasurement(canonical: Array(text.utf8)) }
        }
    }

    @Test func receiptsWithoutATemplateSignTheSameBytesAsBefore() throws {
        let reference = Receipt.AttestationReference(akName: "00", pcr: 14, receiptKeySHA256: key, evidenceURL: "http://n/v1/attestation")
        let plain = Receipt(id: "c", created: 1, model: "m", modelManifestRoot: "r", profile: "p", requestSHA256: "q",
                            responseSHA256: "s", attestation: reference, publicKey: "k")
        #expect(!String(decoding: plain.signedBytes, as: UTF8.self).contains("chatTemplate"))
        let templated = Receipt(id: "c", created: 1, model: "m", modelManifestRoot: "r", profile: "p", requestSHA256: "q",
                                responseSHA256: "s", attestation: reference, publicKey: "k", chatTemplateSHA256: template)
        #expect(String(decoding: templated.signedBytes, as: UTF8.self).contains(#""chatTemplateSHA256":"\#(template)""#))
    }
}
