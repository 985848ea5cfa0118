/// A chunked-body decoder for differential fuzzing, written line by line from RFC 9112 §7.1
/// and the limits `HTTPChunkedStateMachine` documents, sharing no code with it:
///
/// - a size line is `1*HEXDIG [ ";" ext ] CRLF`: at most 32 digits (leading zeros count), a
///   value that fits in `Int`, no whitespace before `;`; `ext` holds no control but HTAB and is
///   at most `maxExtensionLength` bytes;
/// - chunk data is followed by CRLF;
/// - after the last chunk (size 0) come trailer lines `token ":" value CRLF` (value: no control
///   but HTAB) and a final CRLF; the whole trailer section, final CRLF included, is at most
///   `maxTrailerSize` bytes.
///
/// It sees the whole input at once and answers where the message ends, that it needs more, or
/// that it is invalid (an invalid prefix makes the input invalid whatever follows).
struct ChunkedReference {
    enum Result: Equatable {
        case complete(end: Int)
        case incomplete
        case invalid
    }

    let maxExtensionLength: Int
    let maxTrailerSize: Int

    private static let cr: UInt8 = 13
    private static let lf: UInt8 = 10

    func decode(_ bytes: [UInt8]) -> Result {
        var position = 0
        while true {
            guard let cr = bytes[position...].firstIndex(of: Self.cr) else {
                return sizeLine(bytes[position...], complete: false) != nil ? .incomplete : .invalid
            }
            guard let size = sizeLine(bytes[position..<cr], complete: true) else { return .invalid }
            guard cr + 1 < bytes.count else { return .incomplete }
            guard bytes[cr + 1] == Self.lf else { return .invalid }
            position = cr + 2
            if size == 0 { return trailers(bytes, from: position) }
            guard bytes.count - position > size else { return .incomplete }  // data, then at least the CR
            position += size
            guard bytes[position] == Self.cr else { return .invalid }
            guard position + 1 < bytes.count else { return .incomplete }
            guard bytes[position + 1] == Self.lf else { return .invalid }
            position += 2
        }
    }

    /// The chunk size of a size line's content (without CRLF); for an unfinished line, any
    /// non-nil value when it can still become valid.
    private func sizeLine(_ line: ArraySlice<UInt8>, complete: Bool) -> Int? {
        let semicolon = line.firstIndex(of: UInt8(ascii: ";"))
        let digits = line[..<(semicolon ?? line.endIndex)]
        guard digits.count <= 32 else { return nil }
        var size = 0
        for byte in digits {
            guard let value = Self.hexValue(byte) else { return nil }
            let (shifted, overflow) = size.multipliedReportingOverflow(by: 16)
            guard !overflow else { return nil }
            size = shifted + value  // shifted's low four bits are zero: no overflow
        }
        if digits.isEmpty && (complete || semicolon != nil) { return nil }
        if let semicolon {
            let ext = line[(semicolon + 1)...]
            guard ext.count <= maxExtensionLength, ext.allSatisfy(Self.isValueByte) else { return nil }
        }
        return size
    }

    private func trailers(_ bytes: [UInt8], from start: Int) -> Result {
        var position = start
        let result: Result
        lines: while true {
            guard let cr = bytes[position...].firstIndex(of: Self.cr) else {
                let line = bytes[position...]
                result = line.isEmpty || isTrailerLine(line, complete: false) ? .incomplete : .invalid
                break lines
            }
            let line = bytes[position..<cr]
            guard line.isEmpty || isTrailerLine(line, complete: true) else { result = .invalid; break lines }
            guard cr + 1 < bytes.count else { result = .incomplete; break lines }
            guard bytes[cr + 1] == Self.lf else { result = .invalid; break lines }
            position = cr + 2
            if line.isEmpty { result = .complete(end: position); break lines }
        }
        switch result {
        case .complete(let end) where end - start > maxTrailerSize: return .invalid
        case .incomplete where bytes.count - start > maxTrailerSize: return .invalid
        default: return result
        }
    }

    /// `token ":" value`; unfinished: a prefix of one.
    private func isTrailerLine(_ line: ArraySlice<UInt8>, complete: Bool) -> Bool {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
            return !complete && line.allSatisfy(Self.isTokenByte)
        }
        let name = line[..<colon]
        return !name.isEmpty && name.allSatisfy(Self.isTokenByte) && line[(colon + 1)...].allSatisfy(Self.isValueByte)
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        Int(String(UnicodeScalar(byte)), radix: 16)
    }

    /// RFC 9110 tchar.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        guard byte < 0x80 else { return false }
        let character = Character(UnicodeScalar(byte))
        return character.isLetter || character.isNumber || "!#$%&'*+-.^_`|~".contains(character)
    }

    /// HTAB, SP, VCHAR or obs-text: anything but the other controls and DEL.
    private static func isValueByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }
}
