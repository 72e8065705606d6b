import Foundation
import Hummingbird
import HTTPTypes

extension APIError {
    /// The one place where an error becomes an answer in OpenAI's error shape. Refusals the node
    /// decided on keep their status (400 bad input, 413 too large, 429 busy with `Retry-After`, 503
    /// not ready or stopping); anything unexpected — a response that cannot be encoded, a receipt
    /// that cannot be signed — is a 500 that says what failed, never an empty or unsigned 200.
    public init(mapping error: any Error) {
        switch error {
        case let error as APIError:
            self = error
        case let error as InferenceScheduler.SubmitError:
            switch error {
            case .queueFull:
                self = APIError(429, "the node is at capacity; retry shortly", type: "rate_limit_exceeded", code: "queue_full", retryAfter: 1)
            case let .keyLimit(n):
                self = APIError(429, "this API key already has \(n) requests running or queued (limits.per_key_concurrency); retry when one finishes",
                                type: "rate_limit_exceeded", code: "key_concurrency_limit", retryAfter: 1)
            case .draining:
                self = APIError(503, "the node is shutting down", type: "service_unavailable", code: "draining")
            case let .invalid(reason):
                self = APIError(400, reason)
            }
        case let error as RequestWorker.Refusal:
            switch error {
            case let .busy(depth):
                self = APIError(429, "the node is busy reading other requests (\(depth) waiting); retry shortly", type: "rate_limit_exceeded",
                                code: "request_queue_full", retryAfter: 1)
            case let .timedOut(deadline):
                self = APIError(503, "the request waited longer than \(deadline) to be read; retry shortly", type: "service_unavailable",
                                code: "request_timeout", retryAfter: 1)
            case .stopped:
                self = APIError(503, "the node is shutting down", type: "service_unavailable", code: "draining")
            }
        case let error as HTTPError:
            self = APIError(error.status.code, error.body ?? error.status.reasonPhrase,
                            type: error.status.code >= 500 ? "server_error" : "invalid_request_error")
        case let error as ResponseFailure:
            self = APIError(500, error.reason, type: "server_error", code: "internal_error")
        default:
            self = APIError(500, "internal error (\(Swift.type(of: error)))", type: "server_error", code: "internal_error")
        }
    }

    /// This error as an HTTP response.
    public var response: Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Response(status: HTTPResponse.Status(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: json)))
    }
}

/// Something the node failed to do while answering (encode a response, sign a receipt): a 500.
public struct ResponseFailure: Error, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
}
