import Foundation

enum PathSupport {
    /// `path` relative to `directory` when it lies inside it (both resolved), else nil.
    static func relative(_ path: String, within directory: String) -> String? {
        let dir = URL(fileURLWithPath: directory).standardizedFileURL.resolvingSymlinksInPath().path
        let fileURL = URL(fileURLWithPath: path).standardizedFileURL
        let parent = fileURL.deletingLastPathComponent().resolvingSymlinksInPath().path
        let full = (parent == "/" ? "" : parent) + "/" + fileURL.lastPathComponent
        guard full.hasPrefix(dir + "/") else { return nil }
        return String(full.dropFirst(dir.count + 1))
    }

    /// A short list of names for an error message.
    static func list(_ names: [String], limit: Int = 10) -> String {
        let shown = names.prefix(limit).joined(separator: ", ")
        return names.count > limit ? "\(shown) and \(names.count - limit) more" : shown
    }
}
