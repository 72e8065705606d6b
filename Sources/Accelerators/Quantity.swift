/// A public source for a number: where it is, and what it says there (quoted or closely paraphrased).
public struct Source: Sendable, Codable, Equatable {
    public var url: String
    public var says: String

    public init(_ url: String, says: String) {
        self.url = url
        self.says = says
    }
}

/// A number of the device model with its provenance. Nothing in the model is a bare literal:
/// each value says whether the vendor published it, the press reported it, we derived it (and how),
/// or we assumed it (and why).
public struct Quantity: Sendable, Codable, Equatable {
    public enum Basis: String, Sendable, Codable, CaseIterable {
        /// Stated by the vendor (NVIDIA, Arm) in a document at `sources`.
        case published
        /// Stated by press or third parties (the vendor has not published a datasheet).
        case reported
        /// Computed from other sourced numbers; `reasoning` holds the arithmetic.
        case derived
        /// Not public: a stated assumption; `reasoning` says what and why.
        case assumed
    }

    public var value: Double
    public var unit: String
    public var basis: Basis
    /// The arithmetic (derived) or the argument (assumed); optional for published and reported values.
    public var reasoning: String?
    public var sources: [Source]

    public init(_ value: Double, _ unit: String, _ basis: Basis, reasoning: String? = nil, sources: [Source] = []) {
        self.value = value
        self.unit = unit
        self.basis = basis
        self.reasoning = reasoning
        self.sources = sources
    }

    /// Why this quantity is not properly sourced, or nil: published and reported values cite a
    /// source; derived values show their arithmetic and cite what it starts from; assumed values
    /// say why; every value is finite and positive.
    public var provenanceProblem: String? {
        guard value.isFinite, value > 0 else { return "value \(value) is not a positive number" }
        guard !unit.isEmpty else { return "no unit" }
        let cited = !sources.isEmpty && sources.allSatisfy { $0.url.hasPrefix("https://") && !$0.says.isEmpty }
        let explained = !(reasoning ?? "").isEmpty
        switch basis {
        case .published, .reported: return cited ? nil : "a \(basis.rawValue) value needs an https source and what it says"
        case .derived: return cited && explained ? nil : "a derived value needs its arithmetic and the sources it starts from"
        case .assumed: return explained ? nil : "an assumed value needs its reasoning"
        }
    }
}
