/// Small text helpers for the sidecar's startup paths, which link no Foundation (so no
/// `String(contentsOfFile:)`, `trimmingCharacters` or `localizedDescription`).
extension String {
    /// The whole UTF-8 file at `path` (config, PEM). The error says why, in the system's words
    /// (`cannot open: No such file or directory`), or that the file is not UTF-8 text.
    package static func readingFile(_ path: String) throws(TLSConfigurationError) -> String {
        let bytes = try readWholeFile(path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw TLSConfigurationError(file: path, "not UTF-8 text")
        }
        return text
    }
}

extension StringProtocol {
    /// Without leading and trailing whitespace and newlines.
    package func trimmingWhitespace() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }),
              let last = lastIndex(where: { !$0.isWhitespace })
        else { return "" }
        return String(self[first...last])
    }
}
