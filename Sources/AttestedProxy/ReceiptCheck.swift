import Attestation
import Foundation
import ModelSigning
import NodeService

/// The proxy's check of a completion's receipt, before the client has the whole response. In order:
/// 1. `receipt`: the response carries a receipt (the JSON body's `receipt`, or a stream's final event's).
/// 2. The checks of `securenode verify-receipt` (``ReceiptVerifier``), against the evidence the
///    node was attested with and the profile's measurement PCR: `receipt:receipt-signature`,
///    `receipt:request-digest` (the exact body the proxy sent), `receipt:response-digest` (the text the
///    client receives, ``ResponseTranscript/text(ofResponse:)``), `receipt:evidence-quote`,
///    `receipt:key-measured`, `receipt:model-measured`.
/// 3. `receipt:key-attested`: the receipt's key is the attested process's receipt key (not another
///    process's key that the same event log also holds).
public struct ReceiptCheck: Sendable {
    public let measurementPCR: Int

    public init(measurementPCR: Int) {
        self.measurementPCR = measurementPCR
    }

    struct Carrier: Decodable { let receipt: Receipt? }

    /// A whole JSON response.
    public func verify(response: [UInt8], request: [UInt8], attested: AttestedNode.Attested) throws(ChannelFailure) {
        guard let carrier = try? JSONDecoder().decode(Carrier.self, from: Data(response)), let receipt = carrier.receipt else {
            throw ChannelFailure("receipt", "the node's response carries no receipt")
        }
        try verify(receipt, request: request, responseText: ResponseTranscript.text(ofResponse: response), attested: attested)
    }

    public func verify(_ receipt: Receipt, request: [UInt8], responseText: String, attested: AttestedNode.Attested) throws(ChannelFailure) {
        let checks = ReceiptVerifier.verify(receipt: receipt, request: request, responseText: responseText, evidence: attested.evidence,
                                            measurementPCR: measurementPCR)
        if let failed = checks.first(where: { $0.result == .fail }) {
            throw ChannelFailure("receipt:\(failed.check)", failed.detail)
        }
        guard constantTimeEquals(Array(receipt.attestation.receiptKeySHA256.lowercased().utf8), Array(attested.receiptKeySHA256.utf8)) else {
            throw ChannelFailure("receipt:key-attested", "the receipt is signed by key \(receipt.attestation.receiptKeySHA256), not by the attested process's key \(attested.receiptKeySHA256)")
        }
    }
}

/// A completion's server-sent events on their way to the client: each event is passed on as it
/// completes, and its bytes kept for the transcript; the event that carries the receipt is passed
/// on only once the receipt verified over everything before it. After it, only a usage chunk
/// without choices and `[DONE]` may follow. Bounded by `limit` bytes.
struct ReceiptedStream {
    let request: [UInt8]
    let attested: AttestedNode.Attested
    let check: ReceiptCheck
    let limit: Int
    private var pending: [UInt8] = []
    private var transcript: [UInt8] = []
    private var verified = false
    private(set) var failure: ChannelFailure?

    init(request: [UInt8], attested: AttestedNode.Attested, check: ReceiptCheck, limit: Int) {
        self.request = request
        self.attested = attested
        self.check = check
        self.limit = limit
    }

    struct Chunk: Decodable {
        struct Any_: Decodable {}
        let choices: [Any_]?
        let receipt: Receipt?
    }

    /// Takes bytes from the node; returns the complete events that may go to the client.
    mutating func consume(_ bytes: some Collection<UInt8>) -> [UInt8] {
        guard failure == nil else { return [] }
        pending += bytes
        var out: [UInt8] = []
        while let end = Self.eventEnd(pending) {
            let event = Array(pending[..<end])
            pending.removeFirst(end)
            guard accept(event) else { return out }
            out += event
        }
        if pending.count + transcript.count > limit {
            failure = ChannelFailure("receipt", "the stream is longer than \(limit) bytes")
        }
        return out
    }

    /// At the end of the node's stream: an error unless the receipt verified.
    mutating func finish() -> [UInt8] {
        if failure == nil, !verified {
            failure = ChannelFailure("receipt", "the stream ended without a receipt")
        }
        return []
    }

    private mutating func accept(_ event: [UInt8]) -> Bool {
        let text = String(decoding: event, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text == "data: [DONE]" {
            if !verified { failure = ChannelFailure("receipt", "the stream ended without a receipt") }
            return verified
        }
        if verified {
            // After the receipt: a usage chunk without choices, nothing that adds text.
            guard text.hasPrefix("data: "), let chunk = try? JSONDecoder().decode(Chunk.self, from: Data(text.dropFirst(6).utf8)),
                  (chunk.choices ?? []).isEmpty, chunk.receipt == nil else {
                failure = ChannelFailure("receipt", "the stream went on after its receipt")
                return false
            }
            return true
        }
        transcript += event
        guard text.contains("\"receipt\"") else { return true }
        guard text.hasPrefix("data: "), let chunk = try? JSONDecoder().decode(Chunk.self, from: Data(text.dropFirst(6).utf8)),
              let receipt = chunk.receipt else {
            return true
        }
        do throws(ChannelFailure) {
            try check.verify(receipt, request: request, responseText: ResponseTranscript.text(ofResponse: transcript), attested: attested)
            verified = true
            return true
        } catch {
            failure = error
            return false
        }
    }

    /// The end (exclusive) of the first complete event (`\n\n`), if any.
    static func eventEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        for i in 1..<bytes.count where bytes[i] == 10 && bytes[i - 1] == 10 { return i + 1 }
        return nil
    }
}
