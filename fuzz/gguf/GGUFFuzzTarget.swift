// libFuzzer entry point for the GGUF reader. Compiled together with Sources/ModelFormat/*.swift
// into one module by fuzz/run-fuzzer.sh gguf, so there is no import.
//
// The reader must never crash, whatever the input: it either throws GGUFError or returns a file
// whose guarantees hold. A broken guarantee is turned into a crash here so libFuzzer reports it.

@_cdecl("LLVMFuzzerTestOneInput")
public func ggufFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    // An exact-size heap copy, so AddressSanitizer sees any read past the end.
    guard let buffer = try? GGUFBuffer(copying: UnsafeRawBufferPointer(start: data, count: size)) else {
        return 0
    }
    let file: GGUFFile
    do {
        file = try GGUFFile.parse(buffer)
    } catch {
        if error.field.isEmpty || error.description.isEmpty { fatalError("error without a field: \(error)") }
        return 0
    }
    checkInvariants(file)
    return 0
}

private func checkInvariants(_ file: GGUFFile) {
    guard file.version == 2 || file.version == 3,
          file.alignment > 0, file.alignment & (file.alignment - 1) == 0,
          file.dataOffset % file.alignment == 0,
          file.metadataKeys.count == file.metadata.count
    else { fatalError("bad header invariants") }

    // Arrays were validated at parse time: decoding them must succeed.
    for key in file.metadataKeys {
        guard let array = file.array(key) else { continue }
        do {
            let values = try array.values()
            if values.count != array.count { fatalError("array \(key) decoded \(values.count) of \(array.count)") }
        } catch {
            fatalError("decoding validated array \(key) failed: \(error)")
        }
    }

    var previousEnd = file.dataOffset
    for tensor in file.tensors.sorted(by: { $0.fileRange.lowerBound < $1.fileRange.lowerBound }) {
        guard tensor.fileRange.lowerBound >= previousEnd,
              tensor.fileRange.upperBound <= file.fileSize,
              tensor.byteCount == tensor.type.byteCount(dims: tensor.dims),
              file.tensor(named: tensor.name) == tensor,
              let view = file.view(of: tensor)
        else { fatalError("bad tensor \(tensor)") }
        // Touch the first and last byte so ASan checks the range.
        let touched = view.withUnsafeBytes { bytes in
            bytes.isEmpty ? 0 : Int(bytes[0]) &+ Int(bytes[bytes.count - 1])
        }
        if touched < 0 { fatalError("unreachable") }
        previousEnd = tensor.fileRange.upperBound
    }
    if file.summary.description.isEmpty { fatalError("empty summary") }
}
