/// Parses and validates a whole GGUF file; see `GGUFFile` for the rules, in the order they are
/// checked here.
struct GGUFParser {
    /// Smallest possible key/value pair: key length (u64), a 1-byte key, value type (u32), a 1-byte value.
    static let minimumMetadataSize = 8 + 1 + 4 + 1
    /// Smallest possible tensor info: name length (u64), a 1-byte name, n_dims (u32), one dim (u64),
    /// type (u32), offset (u64).
    static let minimumTensorInfoSize = 8 + 1 + 4 + 8 + 4 + 8
    static let maxDimensions = 4
    /// Policy limits, far above real models (tens of keys, at most tens of thousands of tensors),
    /// so that a large file of tiny records cannot make the parsed form many times its size.
    static let maxMetadataCount = 1 << 16
    static let maxTensorCount = 1 << 20
    static let defaultAlignment = 32
    /// Do not let a count read from the file reserve more than this up front; arrays grow as
    /// records are actually read.
    static let maxReservation = 1024

    private let buffer: GGUFBuffer
    private var reader: GGUFReader

    private init(buffer: GGUFBuffer, bytes: UnsafeRawBufferPointer) {
        self.buffer = buffer
        self.reader = GGUFReader(bytes)
    }

    static func parse(_ buffer: GGUFBuffer) throws(GGUFError) -> GGUFFile {
        try buffer.withUnsafeBytes { (bytes) throws(GGUFError) -> GGUFFile in
            var parser = GGUFParser(buffer: buffer, bytes: bytes)
            return try parser.parseFile()
        }
    }

    // MARK: File

    private mutating func parseFile() throws(GGUFError) -> GGUFFile {
        let version = try parseMagicAndVersion()

        let tensorCountOffset = reader.position
        let rawTensorCount = try reader.read(UInt64.self, "header.tensor_count")
        let metadataCountOffset = reader.position
        let rawMetadataCount = try reader.read(UInt64.self, "header.metadata_kv_count")
        let tensorCount = try checkedCount(
            rawTensorCount, minimumSize: Self.minimumTensorInfoSize, what: "tensor infos",
            field: "header.tensor_count", at: tensorCountOffset)
        let metadataCount = try checkedCount(
            rawMetadataCount, minimumSize: Self.minimumMetadataSize, what: "key/value pairs",
            field: "header.metadata_kv_count", at: metadataCountOffset)
        // Both lists must fit together too (checkedCount proved each product fits on its own).
        let (together, overflow) = (tensorCount * Self.minimumTensorInfoSize)
            .addingReportingOverflow(metadataCount * Self.minimumMetadataSize)
        guard !overflow, together <= reader.remaining else {
            throw reader.invalid("header.metadata_kv_count", at: metadataCountOffset,
                                 "\(metadataCount) key/value pairs and \(tensorCount) tensor infos cannot fit in the remaining \(reader.remaining) bytes")
        }

        guard tensorCount <= Self.maxTensorCount else {
            throw reader.error(.unsupported("\(tensorCount) tensors exceed this reader's limit of \(Self.maxTensorCount)"),
                               "header.tensor_count", at: tensorCountOffset)
        }
        guard metadataCount <= Self.maxMetadataCount else {
            throw reader.error(.unsupported("\(metadataCount) key/value pairs exceed this reader's limit of \(Self.maxMetadataCount)"),
                               "header.metadata_kv_count", at: metadataCountOffset)
        }

        let metadata = try parseMetadata(count: metadataCount)
        let tensors = try parseTensorInfos(count: tensorCount, alignment: metadata.alignment)
        let placed = try placeTensors(tensors, alignment: metadata.alignment)

        return GGUFFile(
            buffer: buffer, version: version, metadata: metadata.values, metadataKeys: metadata.keys,
            tensors: placed.tensors, alignment: metadata.alignment, dataOffset: placed.dataOffset)
    }

    private mutating func parseMagicAndVersion() throws(GGUFError) -> UInt32 {
        try reader.require(4, "header.magic")
        let magic = Array(try reader.readBytes(4, "header.magic"))
        guard magic == Array("GGUF".utf8) else {
            if magic == Array("FUGG".utf8) {
                throw reader.error(.unsupported("big-endian GGUF is not supported (magic is byte-swapped)"), "header.magic", at: 0)
            }
            let hex = magic.map { String($0, radix: 16, uppercase: true) }.joined(separator: " ")
            throw reader.invalid("header.magic", at: 0, "not a GGUF file: magic is \(hex), expected 47 47 55 46 (\"GGUF\")")
        }
        let versionOffset = reader.position
        let version = try reader.read(UInt32.self, "header.version")
        switch version {
        case 2, 3:
            return version
        case 1:
            throw reader.error(.unsupported("GGUF version 1 is not supported (only versions 2 and 3)"), "header.version", at: versionOffset)
        default:
            if (1 ... 3).contains(version.byteSwapped) {
                throw reader.error(.unsupported("big-endian GGUF is not supported (version \(version.byteSwapped) is byte-swapped)"), "header.version", at: versionOffset)
            }
            throw reader.error(.unsupported("unknown GGUF version \(version) (only versions 2 and 3 are supported)"), "header.version", at: versionOffset)
        }
    }

    /// A record count must fit in `Int` and its records, at their smallest, in the remaining bytes.
    private func checkedCount(
        _ raw: UInt64, minimumSize: Int, what: String, field: String, at offset: Int
    ) throws(GGUFError) -> Int {
        guard let count = Int(exactly: raw) else {
            throw reader.invalid(field, at: offset, "\(raw) \(what) cannot fit in the remaining \(reader.remaining) bytes")
        }
        let (need, overflow) = count.multipliedReportingOverflow(by: minimumSize)
        guard !overflow, need <= reader.remaining else {
            let least = overflow ? "more than \(Int.max)" : "\(need)"
            throw reader.invalid(field, at: offset, "\(count) \(what) need at least \(least) bytes and cannot fit in the remaining \(reader.remaining) bytes")
        }
        return count
    }

    // MARK: Metadata

    private struct Metadata {
        var values: [String: GGUFValue] = [:]
        var keys: [String] = []
        var alignment = GGUFParser.defaultAlignment
    }

    private mutating func parseMetadata(count: Int) throws(GGUFError) -> Metadata {
        var metadata = Metadata()
        metadata.values.reserveCapacity(min(count, Self.maxReservation))
        metadata.keys.reserveCapacity(min(count, Self.maxReservation))
        for index in 0 ..< count {
            reader.subject = nil
            let keyOffset = reader.position
            let key = try reader.readName("metadata[\(index)].key")
            reader.subject = "key \"\(key)\""
            guard metadata.values[key] == nil else {
                let first = metadata.keys.firstIndex(of: key) ?? 0
                throw reader.invalid("metadata[\(index)].key", at: keyOffset, "duplicate key (first at metadata[\(first)])")
            }

            let typeOffset = reader.position
            let rawType = try reader.read(UInt32.self, "metadata[\(index)].value_type")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw reader.invalid("metadata[\(index)].value_type", at: typeOffset, "unknown value type \(rawType)")
            }
            let valueOffset = reader.position
            let value = try parseValue(type, key: key, field: "metadata[\(index)].value")

            if key == "general.alignment" {
                guard case let .uint32(alignment) = value else {
                    throw reader.invalid("metadata[\(index)].value_type", at: typeOffset, "general.alignment must be uint32, found \(type)")
                }
                guard alignment != 0, alignment & (alignment - 1) == 0, let aligned = Int(exactly: alignment) else {
                    throw reader.invalid("metadata[\(index)].value", at: valueOffset, "general.alignment must be a nonzero power of two, found \(alignment)")
                }
                metadata.alignment = aligned
            }
            metadata.values[key] = value
            metadata.keys.append(key)
        }
        reader.subject = nil
        return metadata
    }

    private mutating func parseValue(_ type: GGUFValueType, key: String, field: String) throws(GGUFError) -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try reader.read(UInt8.self, field))
        case .int8: return .int8(try reader.read(Int8.self, field))
        case .uint16: return .uint16(try reader.read(UInt16.self, field))
        case .int16: return .int16(try reader.read(Int16.self, field))
        case .uint32: return .uint32(try reader.read(UInt32.self, field))
        case .int32: return .int32(try reader.read(Int32.self, field))
        case .float32: return .float32(try reader.readFloat32(field))
        case .uint64: return .uint64(try reader.read(UInt64.self, field))
        case .int64: return .int64(try reader.read(Int64.self, field))
        case .float64: return .float64(try reader.readFloat64(field))
        case .bool: return .bool(try readBool(field))
        case .string: return .string(try reader.readString(field))
        case .array: return .array(try parseArray(key: key, field: field))
        }
    }

    private mutating func readBool(_ field: @autoclosure () -> String) throws(GGUFError) -> Bool {
        let byte = try reader.read(UInt8.self, field())
        guard byte <= 1 else {
            throw reader.invalid(field(), at: reader.position - 1, "bool must be 0 or 1, found \(byte)")
        }
        return byte == 1
    }

    /// Validates an array in one walk and records where its elements lie; decodes nothing.
    private mutating func parseArray(key: String, field: String) throws(GGUFError) -> GGUFArray {
        let typeOffset = reader.position
        let rawType = try reader.read(UInt32.self, "\(field).element_type")
        guard let elementType = GGUFValueType(rawValue: rawType) else {
            throw reader.invalid("\(field).element_type", at: typeOffset, "unknown array element type \(rawType)")
        }
        guard elementType != .array else {
            throw reader.error(.unsupported("nested arrays are not supported"), "\(field).element_type", at: typeOffset)
        }
        let countOffset = reader.position
        let rawCount = try reader.read(UInt64.self, "\(field).count")
        let count = try checkedCount(
            rawCount, minimumSize: elementType.minimumEncodedSize, what: "\(elementType) elements",
            field: "\(field).count", at: countOffset)

        let start = reader.position
        switch elementType {
        case .string:
            for index in 0 ..< count {
                _ = try reader.readStringBytes("\(field)[\(index)]")
            }
        case .bool:
            for index in 0 ..< count {
                _ = try readBool("\(field)[\(index)]")
            }
        default:
            // checkedCount proved count * size fits in the remaining bytes.
            try reader.skip(count * elementType.minimumEncodedSize, field)
        }
        return GGUFArray(key: key, field: field, elementType: elementType, count: count,
                         byteRange: start ..< reader.position, buffer: buffer)
    }

    // MARK: Tensor infos

    /// A tensor info as read, before its data is placed in the file.
    private struct RawTensor {
        var name: String
        var dims: [Int]
        var type: GGMLType
        var offset: Int
        var byteCount: Int
        var elementCount: Int
        /// Where the offset field is, for errors about placement.
        var offsetFieldPosition: Int
    }

    private mutating func parseTensorInfos(count: Int, alignment: Int) throws(GGUFError) -> [RawTensor] {
        var tensors: [RawTensor] = []
        tensors.reserveCapacity(min(count, Self.maxReservation))
        var indexByName: [String: Int] = [:]
        indexByName.reserveCapacity(min(count, Self.maxReservation))

        for index in 0 ..< count {
            let field = "tensor[\(index)]"
            reader.subject = nil
            let nameOffset = reader.position
            let name = try reader.readName("\(field).name")
            reader.subject = "tensor \"\(name)\""
            if let first = indexByName[name] {
                throw reader.invalid("\(field).name", at: nameOffset, "duplicate tensor name (first at tensor[\(first)])")
            }

            let dimsOffset = reader.position
            let dimensionCount = try reader.read(UInt32.self, "\(field).n_dims")
            guard dimensionCount >= 1, dimensionCount <= Self.maxDimensions else {
                throw reader.invalid("\(field).n_dims", at: dimsOffset, "n_dims must be 1...\(Self.maxDimensions), found \(dimensionCount)")
            }
            var dims: [Int] = []
            dims.reserveCapacity(Int(dimensionCount))
            for axis in 0 ..< Int(dimensionCount) {
                let dimOffset = reader.position
                let raw = try reader.read(UInt64.self, "\(field).dims[\(axis)]")
                guard raw >= 1 else {
                    throw reader.invalid("\(field).dims[\(axis)]", at: dimOffset, "dimension must be >= 1, found 0")
                }
                guard let dim = Int(exactly: raw) else {
                    throw reader.invalid("\(field).dims[\(axis)]", at: dimOffset, "dimension \(raw) does not fit in Int")
                }
                dims.append(dim)
            }

            let typeOffset = reader.position
            let rawType = try reader.read(UInt32.self, "\(field).type")
            guard let type = GGMLType(rawValue: rawType) else {
                throw reader.error(.unsupported("tensor \"\(name)\" has unknown ggml type id \(rawType)"), "\(field).type", at: typeOffset)
            }

            let offsetPosition = reader.position
            let rawOffset = try reader.read(UInt64.self, "\(field).offset")
            guard let offset = Int(exactly: rawOffset) else {
                throw reader.invalid("\(field).offset", at: offsetPosition, "offset \(rawOffset) does not fit in Int")
            }

            var elements = 1
            for dim in dims {
                let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
                guard !overflow else {
                    throw reader.invalid("\(field).dims", at: dimsOffset, "element count of \(dims) overflows Int")
                }
                elements = product
            }
            guard dims[0] % type.blockSize == 0 else {
                throw reader.invalid("\(field).dims[0]", at: dimsOffset + 4,
                                     "ne0 = \(dims[0]) is not a multiple of the \(type) block size \(type.blockSize)")
            }
            guard let byteCount = type.byteCount(dims: dims) else {
                throw reader.invalid("\(field).dims", at: dimsOffset, "byte size of \(type) \(dims) overflows Int")
            }
            guard offset % alignment == 0 else {
                throw reader.invalid("\(field).offset", at: offsetPosition, "offset \(offset) is not a multiple of the alignment \(alignment)")
            }

            indexByName[name] = index
            tensors.append(RawTensor(name: name, dims: dims, type: type, offset: offset, byteCount: byteCount,
                                     elementCount: elements, offsetFieldPosition: offsetPosition))
        }
        reader.subject = nil
        return tensors
    }

    // MARK: Tensor data

    private func placeTensors(
        _ raw: [RawTensor], alignment: Int
    ) throws(GGUFError) -> (tensors: [GGUFTensorInfo], dataOffset: Int) {
        let fileSize = reader.bytes.count
        guard let dataOffset = Self.alignUp(reader.position, to: alignment) else {
            throw reader.invalid("tensor_data", "start of the tensor data section overflows Int")
        }

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(raw.count)
        for (index, tensor) in raw.enumerated() {
            let field = "tensor[\(index)].offset"
            let subject = "tensor \"\(tensor.name)\""
            let (start, startOverflow) = dataOffset.addingReportingOverflow(tensor.offset)
            let (end, endOverflow) = start.addingReportingOverflow(tensor.byteCount)
            guard !startOverflow, !endOverflow else {
                throw GGUFError(.invalid("data at offset \(tensor.offset) + \(tensor.byteCount) bytes overflows Int"),
                                field: field, subject: subject, offset: tensor.offsetFieldPosition)
            }
            guard end <= fileSize else {
                throw GGUFError(.invalid("\(tensor.type) data [\(start), \(end)) extends past the end of the file (\(fileSize) bytes)"),
                                field: field, subject: subject, offset: tensor.offsetFieldPosition)
            }
            tensors.append(GGUFTensorInfo(
                index: index, name: tensor.name, dims: tensor.dims, type: tensor.type, offset: tensor.offset,
                byteCount: tensor.byteCount, elementCount: tensor.elementCount, fileRange: start ..< end))
        }

        // No two tensors may share bytes: sort by start and compare neighbours.
        let order = tensors.indices.sorted { (tensors[$0].fileRange.lowerBound, $0) < (tensors[$1].fileRange.lowerBound, $1) }
        for (previous, current) in zip(order, order.dropFirst()) {
            let earlier = tensors[previous], later = tensors[current]
            if later.fileRange.lowerBound < earlier.fileRange.upperBound {
                throw GGUFError(
                    .invalid("data \(later.fileRange) overlaps tensor[\(earlier.index)] \"\(earlier.name)\" at \(earlier.fileRange)"),
                    field: "tensor[\(later.index)].offset", subject: "tensor \"\(later.name)\"",
                    offset: raw[later.index].offsetFieldPosition)
            }
        }

        // After the last tensor only alignment padding may follow (with no tensors: only the
        // padding up to the data section). Its content is not interpreted.
        let dataEnd = tensors.map(\.fileRange.upperBound).max() ?? dataOffset
        let allowedEnd = tensors.isEmpty ? dataOffset : (Self.alignUp(dataEnd, to: alignment) ?? Int.max)
        guard fileSize <= allowedEnd else {
            throw GGUFError(
                .invalid("\(fileSize - allowedEnd) unexpected bytes after the tensor data, which ends at \(dataEnd) (only padding to a multiple of \(alignment) is allowed)"),
                field: "tensor_data", offset: allowedEnd)
        }
        return (tensors, dataOffset)
    }

    /// The first multiple of `alignment` (a power of two) at or after `value`, or nil on overflow.
    static func alignUp(_ value: Int, to alignment: Int) -> Int? {
        let (sum, overflow) = value.addingReportingOverflow(alignment - 1)
        return overflow ? nil : sum & ~(alignment - 1)
    }
}
