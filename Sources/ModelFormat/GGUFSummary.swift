/// Headline facts about a parsed file, for a CLI to print.
public struct GGUFSummary: Sendable, Equatable, CustomStringConvertible {
    public let version: UInt32
    /// `general.architecture`, e.g. `llama`.
    public let architecture: String?
    /// `general.name`.
    public let name: String?
    public let fileSize: Int
    public let metadataCount: Int
    public let tensorCount: Int
    /// Number of tensors of each type.
    public let tensorTypeCounts: [GGMLType: Int]
    /// Sum of the tensors' element counts.
    public let parameterCount: Int
    /// Sum of the tensors' byte counts.
    public let tensorBytes: Int
    public let alignment: Int
    public let dataOffset: Int

    init(_ file: GGUFFile) {
        version = file.version
        architecture = file.string("general.architecture")
        name = file.string("general.name")
        fileSize = file.fileSize
        metadataCount = file.metadataKeys.count
        tensorCount = file.tensors.count
        var counts: [GGMLType: Int] = [:]
        var parameters = 0
        var bytes = 0
        for tensor in file.tensors {
            counts[tensor.type, default: 0] += 1
            // Tensors do not overlap and lie inside the file, so these sums stay far below Int.max;
            // saturate anyway rather than trust that.
            parameters = parameters.addingReportingOverflow(tensor.elementCount).overflow ? .max : parameters + tensor.elementCount
            bytes = bytes.addingReportingOverflow(tensor.byteCount).overflow ? .max : bytes + tensor.byteCount
        }
        tensorTypeCounts = counts
        parameterCount = parameters
        tensorBytes = bytes
        alignment = file.alignment
        dataOffset = file.dataOffset
    }

    /// Type counts, most frequent first (ties by type id): `Q4_1: 210, F32: 61, Q8_0: 1`.
    public var typeCountsDescription: String {
        tensorTypeCounts
            .sorted { ($0.value, $1.key.id) > ($1.value, $0.key.id) }
            .map { "\($0.key.name): \($0.value)" }
            .joined(separator: ", ")
    }

    public var description: String {
        [
            "GGUF v\(version), \(fileSize) bytes",
            "architecture: \(architecture ?? "(none)")",
            "name: \(name ?? "(none)")",
            "metadata keys: \(metadataCount)",
            "tensors: \(tensorCount) (\(typeCountsDescription))",
            "parameters: \(parameterCount) (\(Self.abbreviated(parameterCount)))",
            "tensor bytes: \(tensorBytes) from offset \(dataOffset), alignment \(alignment)",
        ].joined(separator: "\n")
    }

    /// `134515008` → `134.5M`.
    static func abbreviated(_ value: Int) -> String {
        for (unit, scale) in [("T", 1_000_000_000_000), ("G", 1_000_000_000), ("M", 1_000_000), ("K", 1000)] where value >= scale {
            let tenths = value / (scale / 10)
            return "\(tenths / 10).\(tenths % 10)\(unit)"
        }
        return "\(value)"
    }
}
