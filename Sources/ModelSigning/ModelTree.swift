import Crypto
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The files of a model on disk, found and hashed without following symlinks anywhere.
///
/// Every directory is opened relative to its parent with `O_NOFOLLOW`, and every file is opened the
/// same way and checked to be the same inode the walk saw, so a path swapped for a symlink mid-way
/// is caught rather than followed outside the model.
struct ModelTree {
    struct File: Sendable {
        /// POSIX path relative to the model; "." when the model is a single file.
        var name: String
        var components: [String]
        var device: UInt64
        var inode: UInt64
        var size: Int
    }

    let root: String
    let isSingleFile: Bool
    let files: [File]

    /// Walks `root`, skipping the given relative paths (by whole components).
    init(root: String, ignoring ignored: [String]) throws(ModelSigningError) {
        self.root = root
        var st = stat()
        guard lstat(root, &st) == 0 else {
            throw ModelSigningError(.modelNotFound, "model path \(root) cannot be read: \(String(cString: strerror(errno)))")
        }
        switch st.st_mode & S_IFMT {
        case S_IFLNK:
            throw ModelSigningError(.symlink, "model path \(root) is a symbolic link; give the real path")
        case S_IFREG:
            isSingleFile = true
            files = [File(name: ".", components: [], device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int(st.st_size))]
        case S_IFDIR:
            isSingleFile = false
            let fd = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else {
                throw ModelSigningError(.io, "cannot open model directory \(root): \(String(cString: strerror(errno)))")
            }
            defer { close(fd) }
            var found: [File] = []
            try Self.walk(directory: fd, prefix: [], ignored: ignored, into: &found)
            files = found.sorted { ModelPath.componentOrder($0.name, $1.name) }
        default:
            throw ModelSigningError(.specialFile, "model path \(root) is neither a file nor a directory")
        }
    }

    private static func walk(directory fd: Int32, prefix: [String], ignored: [String], into found: inout [File]) throws(ModelSigningError) {
        let where_ = prefix.isEmpty ? "the model directory" : prefix.joined(separator: "/")
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else {
            if copy >= 0 { close(copy) }
            throw ModelSigningError(.io, "cannot list \(where_): \(String(cString: strerror(errno)))")
        }
        var names: [String] = []
        while let entry = readdir(dir) {
            let raw = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if raw == [0x2E] || raw == [0x2E, 0x2E] { continue }
            guard let name = String(validating: raw, as: UTF8.self) else {
                closedir(dir)
                throw ModelSigningError(.unsafeResourceName, "a file name in \(where_) is not valid UTF-8")
            }
            names.append(name)
        }
        closedir(dir)
        for name in names.sorted() {
            let components = prefix + [name]
            let relative = components.joined(separator: "/")
            if ignored.contains(where: { ModelPath.isUnder(relative, $0) }) { continue }
            var st = stat()
            guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw ModelSigningError(.io, "cannot stat \(relative): \(String(cString: strerror(errno)))")
            }
            switch st.st_mode & S_IFMT {
            case S_IFLNK:
                throw ModelSigningError(.symlink, "\(relative) is a symbolic link; signed models may not contain symlinks")
            case S_IFDIR:
                let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else {
                    throw ModelSigningError(.io, "cannot open directory \(relative): \(String(cString: strerror(errno)))")
                }
                defer { close(child) }
                try walk(directory: child, prefix: components, ignored: ignored, into: &found)
            case S_IFREG:
                found.append(File(name: relative, components: components, device: UInt64(st.st_dev),
                                  inode: UInt64(st.st_ino), size: Int(st.st_size)))
            default:
                throw ModelSigningError(.specialFile, "\(relative) is not a regular file (device, FIFO or socket)")
            }
        }
    }

    /// Opens a file found by the walk, refusing symlinks at every level and a different inode.
    func open(_ file: File) throws(ModelSigningError) -> Int32 {
        let flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC
        var fd: Int32
        if isSingleFile {
            fd = Glibc.open(root, flags)
        } else {
            fd = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            for (i, component) in file.components.enumerated() where fd >= 0 {
                let last = i == file.components.count - 1
                let next = openat(fd, component, last ? flags : (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))
                close(fd)
                fd = next
            }
        }
        guard fd >= 0 else {
            if errno == ELOOP || errno == ENOTDIR {
                throw ModelSigningError(.symlink, "\(file.name) was replaced by a symbolic link while the model was read")
            }
            throw ModelSigningError(.io, "cannot open \(file.name): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG,
              UInt64(st.st_dev) == file.device, UInt64(st.st_ino) == file.inode else {
            close(fd)
            throw ModelSigningError(.fileChanged, "\(file.name) was replaced while the model was read")
        }
        return fd
    }

    static let chunkSize = 4 << 20

    /// SHA-256 of one file. With `destination`, the bytes are read into it (it must be `file.size`
    /// long) and hashed from there, so the caller keeps exactly the bytes that were hashed.
    func sha256(of file: File, into destination: ModelBytes?, scratch: UnsafeMutableRawBufferPointer) throws(ModelSigningError) -> [UInt8] {
        let fd = try open(file)
        defer { close(fd) }
        var hasher = SHA256()
        var offset = 0
        while offset < file.size {
            let want = min(Self.chunkSize, file.size - offset)
            let target = destination.map { UnsafeMutableRawBufferPointer(rebasing: $0.mutableBuffer[offset..<offset + want]) }
                ?? UnsafeMutableRawBufferPointer(rebasing: scratch[0..<want])
            var filled = 0
            while filled < want {
                let n = read(fd, target.baseAddress! + filled, want - filled)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else {
                    throw ModelSigningError(.io, "cannot read \(file.name): \(String(cString: strerror(errno)))")
                }
                guard n > 0 else {
                    throw ModelSigningError(.fileChanged, "\(file.name) shrank while it was read (expected \(file.size) bytes)")
                }
                filled += n
            }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(target))
            offset += want
        }
        var probe: UInt8 = 0
        guard read(fd, &probe, 1) == 0 else {
            throw ModelSigningError(.fileChanged, "\(file.name) grew while it was read (expected \(file.size) bytes)")
        }
        return Array(hasher.finalize())
    }

    /// Hashes every file, on up to `workers` threads; loads the files `load` selects into private memory.
    func hashAll(load: (String) -> Bool, workers: Int = 2) throws(ModelSigningError) -> [(digest: [UInt8], bytes: ModelBytes?)] {
        let count = files.count
        let results = Mutex<[Result<([UInt8], ModelBytes?), ModelSigningError>?]>(Array(repeating: nil, count: count))
        let next = Atomic<Int>(0)
        let loadFlags = files.map { load($0.name) }
        let threads = max(1, min(workers, count))
        DispatchSupport.concurrentPerform(iterations: threads) { _ in
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkSize, alignment: 64)
            defer { scratch.deallocate() }
            while true {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < count else { return }
                let file = files[i]
                let result: Result<([UInt8], ModelBytes?), ModelSigningError>
                do throws(ModelSigningError) {
                    var destination: ModelBytes?
                    if loadFlags[i] {
                        guard let bytes = ModelBytes(count: file.size) else {
                            throw ModelSigningError(.io, "cannot allocate \(file.size) bytes for \(file.name)")
                        }
                        destination = bytes
                    }
                    result = .success((try sha256(of: file, into: destination, scratch: scratch), destination))
                } catch {
                    result = .failure(error)
                }
                results.withLock { $0[i] = result }
            }
        }
        var out: [(digest: [UInt8], bytes: ModelBytes?)] = []
        out.reserveCapacity(count)
        for r in results.withLock({ $0 }) {
            switch r {
            case .success(let (digest, bytes))?: out.append((digest, bytes))
            case .failure(let error)?: throw error
            case nil: throw ModelSigningError(.io, "internal error: a file was not hashed")
            }
        }
        return out
    }
}
