import ModelFormat

/// Typed, validated metadata reads that throw `InferenceError` naming the key (the tokenizer's here,
/// the model config's in `Inference`: `package` access).
extension GGUFFile {
    /// A required integer in `range`.
    package func requiredInt(_ key: String, in range: ClosedRange<Int>) throws(InferenceError) -> Int {
        guard let value = self[key] else {
            throw InferenceError(.missingMetadata, "the model has no \(key)")
        }
        return try checkedInt(value, key, range)
    }

    /// An optional integer in `range`; nil when the key is absent.
    package func optionalInt(_ key: String, in range: ClosedRange<Int>) throws(InferenceError) -> Int? {
        guard let value = self[key] else { return nil }
        return try checkedInt(value, key, range)
    }

    private func checkedInt(_ value: GGUFValue, _ key: String, _ range: ClosedRange<Int>) throws(InferenceError) -> Int {
        guard let int = value.intValue else {
            throw InferenceError(.invalidMetadata, "\(key) must be an integer, found \(value.type)")
        }
        guard range.contains(int) else {
            throw InferenceError(.invalidMetadata, "\(key) = \(int) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return int
    }

    /// An optional finite float (stored as float32 or float64) in `range`.
    package func optionalFloat(_ key: String, in range: ClosedRange<Double>) throws(InferenceError) -> Float? {
        guard let value = self[key] else { return nil }
        guard let double = value.doubleValue else {
            throw InferenceError(.invalidMetadata, "\(key) must be a float, found \(value.type)")
        }
        guard double.isFinite, range.contains(double) else {
            throw InferenceError(.invalidMetadata, "\(key) = \(double) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return Float(double)
    }

    /// An optional string.
    package func optionalString(_ key: String) throws(InferenceError) -> String? {
        guard let value = self[key] else { return nil }
        guard let string = value.stringValue else {
            throw InferenceError(.invalidMetadata, "\(key) must be a string, found \(value.type)")
        }
        return string
    }

    /// An optional bool.
    package func optionalBool(_ key: String) throws(InferenceError) -> Bool? {
        guard let value = self[key] else { return nil }
        guard let bool = value.boolValue else {
            throw InferenceError(.invalidMetadata, "\(key) must be a bool, found \(value.type)")
        }
        return bool
    }
}
