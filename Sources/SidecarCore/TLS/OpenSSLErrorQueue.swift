import COpenSSL

/// Drains OpenSSL's per-thread error queue into Swift values right at the failing call, so no
/// stale error leaks into the next connection served by the same thread.
enum OpenSSLErrorQueue {
    struct Entry {
        let code: UInt
        var library: UInt { COpenSSL_ERR_GET_LIB(code) }
        var reason: UInt { COpenSSL_ERR_GET_REASON(code) }
        var text: String {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    static func drain() -> [Entry] {
        var entries: [Entry] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            entries.append(Entry(code: code))
        }
        return entries
    }

    /// The queue as one readable line, emptying it.
    static func drainedDescription(fallback: String) -> String {
        let entries = drain()
        if entries.isEmpty { return fallback }
        return entries.map(\.text).joined(separator: "; ")
    }
}
