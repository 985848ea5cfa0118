import COpenSSL
import NIOCore

/// The mesh's own TLS 1.3 record layer for a connection's application data once OpenSSL's
/// handshake is done (RFC 8446 §5, §4.6): what `TLSConnection` writes and reads instead of
/// `SSL_write` / `SSL_read` for the AES-GCM suites. OpenSSL 3.0 spends ~8k instructions on a
/// 200-byte record it writes and ~6k on one it reads; this ~3.4k and ~3.1k (bench/README,
/// "What the rest of the gap is").
///
/// It seals application data, alerts and KeyUpdates, and opens records: application data is
/// returned, close_notify and other alerts end the connection, a KeyUpdate moves the read key
/// (and, when the peer asks, answers with one and moves the write key), NewSessionTickets that
/// arrive after the switch are dropped (a later connection makes a full handshake instead), any
/// other post-handshake message is refused. The write key moves on by itself every
/// `recordsPerKey` records, well inside AES-GCM's limit (§5.5). A failure seals the fatal alert
/// OpenSSL would have sent and makes every later read fail.
///
/// The write side starts at the switch (`TLSConnection.startRecordLayer`); the read side once
/// OpenSSL holds nothing unread (`startReading`). Runs on the connection's event loop only.
final class TLS13RecordLayer {
    typealias ReadResult = TLSConnection.ReadResult

    /// RFC 8446 §6 alert descriptions this layer sends or names.
    enum Alert: UInt8 {
        case closeNotify = 0
        case unexpectedMessage = 10
        case badRecordMAC = 20
        case recordOverflow = 22
        case illegalParameter = 47
        case decodeError = 50
        case internalError = 80
    }

    private var sealer: TLS13RecordProtection
    private var opener: TLS13RecordProtection?
    private let recordsPerKey: UInt64
    /// Post-handshake handshake bytes that are not yet a whole message.
    private var handshakeBytes = ByteBuffer()
    private var failure: TLSError?
    /// KeyUpdates sent (tests).
    private(set) var keyUpdatesSent = 0
    /// The largest post-handshake message accepted (a NewSessionTicket's ticket is < 2^16).
    private static let maxHandshakeMessage = 1 << 17

    init(sealer: TLS13RecordProtection, recordsPerKey: UInt64) {
        self.sealer = sealer
        self.recordsPerKey = recordsPerKey
    }

    var readsRecords: Bool { opener != nil }
    /// The negotiated suite (the read side's keys use it too).
    var suite: TLS13RecordProtection.Suite { sealer.suite }

    func startReading(with opener: TLS13RecordProtection) {
        self.opener = opener
    }

    // MARK: Writing

    /// Seals `plaintext` as application data records of at most 2^14 bytes each.
    func write(_ plaintext: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(TLSError) {
        var offset = 0
        repeat {
            let count = min(plaintext.count - offset, TLS13RecordProtection.maxPlaintext)
            try sealer.seal(UnsafeRawBufferPointer(rebasing: plaintext[offset..<offset + count]), into: &output)
            offset += count
            if sealer.sequence >= recordsPerKey { try sendKeyUpdate(requestingPeer: false, into: &output) }
        } while offset < plaintext.count
    }

    /// Seals a KeyUpdate and moves the write key to the next generation (§4.6.3).
    func sendKeyUpdate(requestingPeer: Bool, into output: inout ByteBuffer) throws(TLSError) {
        try seal([24, 0, 0, 1, requestingPeer ? 1 : 0], as: .handshake, into: &output)
        sealer = try sealer.next()
        keyUpdatesSent += 1
    }

    /// Seals an alert: close_notify (a warning) or a fatal one.
    func sendAlert(_ alert: Alert, into output: inout ByteBuffer) {
        try? seal([alert == .closeNotify ? 1 : 2, alert.rawValue], as: .alert, into: &output)
    }

    func seal(
        _ message: [UInt8], as type: TLS13RecordProtection.ContentType, into output: inout ByteBuffer
    ) throws(TLSError) {
        let failure: TLSError? = message.withUnsafeBytes { bytes in
            do throws(TLSError) {
                try sealer.seal(bytes, contentType: type, into: &output)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    // MARK: Reading

    /// Opens the next record in `inbound` that carries something for the caller; handshake
    /// records are handled here. Replies (a KeyUpdate's answer, a fatal alert) go to `replies`.
    func read(_ inbound: inout ByteBuffer, allocator: ByteBufferAllocator, replies: inout ByteBuffer?) -> ReadResult {
        if let failure { return .failed(failure) }
        while inbound.readableBytes >= TLS13RecordProtection.headerLength, let opener {
            let view = inbound.readableBytesView
            let start = view.startIndex
            let length = Int(view[start + 3]) << 8 | Int(view[start + 4])
            guard length <= TLS13RecordProtection.maxCiphertext else {
                return fail(.recordOverflow, "a record of \(length) bytes is longer than 2^14 + 256", replies: &replies)
            }
            let recordLength = TLS13RecordProtection.headerLength + length
            guard inbound.readableBytes >= recordLength else { return .wantMoreData }
            let opened: Result<(TLS13RecordProtection.ContentType, ByteBuffer), TLSError> = inbound.withUnsafeReadableBytes {
                bytes in
                do throws(TLSError) {
                    return .success(
                        try opener.open(UnsafeRawBufferPointer(rebasing: bytes[0..<recordLength]), allocator: allocator))
                } catch {
                    return .failure(error)
                }
            }
            inbound.moveReaderIndex(forwardBy: recordLength)
            switch opened {
            case .failure(let error):
                return fail(.badRecordMAC, error.detail, replies: &replies)
            case .success((.applicationData, let plaintext)):
                guard handshakeBytes.readableBytes == 0 else {
                    return fail(.unexpectedMessage, "application data inside a split handshake message", replies: &replies)
                }
                if plaintext.readableBytes > 0 { return .data(plaintext) }
            case .success((.alert, let plaintext)):
                guard plaintext.readableBytes == 2, let description = plaintext.getInteger(at: plaintext.readerIndex + 1, as: UInt8.self)
                else {
                    return fail(.decodeError, "an alert record of \(plaintext.readableBytes) bytes", replies: &replies)
                }
                if description == Alert.closeNotify.rawValue { return .closeNotify }
                failure = TLSError(.other, "peer sent the alert \(Self.name(ofAlert: description))")
                return .failed(failure!)
            case .success((.handshake, var plaintext)):
                handshakeBytes.writeBuffer(&plaintext)
                if let result = handlePostHandshakeMessages(replies: &replies) { return result }
            }
        }
        return .wantMoreData
    }

    /// Handles the whole messages in `handshakeBytes`; nil to go on reading.
    private func handlePostHandshakeMessages(replies: inout ByteBuffer?) -> ReadResult? {
        while handshakeBytes.readableBytes >= 4 {
            let view = handshakeBytes.readableBytesView
            let start = view.startIndex
            let type = view[start]
            let length = Int(view[start + 1]) << 16 | Int(view[start + 2]) << 8 | Int(view[start + 3])
            guard length <= Self.maxHandshakeMessage else {
                return fail(.decodeError, "a post-handshake message of \(length) bytes", replies: &replies)
            }
            guard handshakeBytes.readableBytes >= 4 + length else { return nil }
            switch type {
            case 4:  // NewSessionTicket: kept only while OpenSSL reads (see the type's comment)
                handshakeBytes.moveReaderIndex(forwardBy: 4 + length)
            case 24:  // KeyUpdate
                guard length == 1, let request = view.dropFirst(4).first else {
                    return fail(.decodeError, "a KeyUpdate of \(length) bytes", replies: &replies)
                }
                guard request <= 1 else {
                    return fail(.illegalParameter, "a KeyUpdate with request_update \(request)", replies: &replies)
                }
                handshakeBytes.moveReaderIndex(forwardBy: 5)
                // The next key starts with the next record (§5.1).
                guard handshakeBytes.readableBytes == 0 else {
                    return fail(.unexpectedMessage, "a KeyUpdate that does not end its record", replies: &replies)
                }
                do throws(TLSError) {
                    opener = try opener?.next()
                    if request == 1 {
                        var output = replies ?? ByteBuffer()
                        replies = nil
                        try sendKeyUpdate(requestingPeer: false, into: &output)
                        replies = output
                    }
                } catch {
                    return fail(.internalError, error.detail, replies: &replies)
                }
            default:
                return fail(.unexpectedMessage, "an unexpected post-handshake message (type \(type))", replies: &replies)
            }
        }
        if handshakeBytes.readableBytes == 0 { handshakeBytes.clear() }
        return nil
    }

    private func fail(_ alert: Alert, _ detail: String, replies: inout ByteBuffer?) -> ReadResult {
        var output = replies ?? ByteBuffer()
        replies = nil
        sendAlert(alert, into: &output)
        replies = output
        failure = TLSError(.other, "\(detail) (sent \(Self.name(ofAlert: alert.rawValue)))")
        return .failed(failure!)
    }

    static func name(ofAlert description: UInt8) -> String {
        String(cString: SSL_alert_desc_string_long(Int32(description)))
    }
}

/// What OpenSSL reports during a handshake that the switch to `TLS13RecordLayer` needs: the
/// application traffic secrets (its key log) and, per direction, how many records it protected
/// under the current application key and how many KeyUpdates moved that key (its message
/// callback). A direction's application key starts with the record after its Finished message
/// (§4.4.4; a key changes only at a record boundary), so records are counted from there.
struct TLS13HandshakeTrace {
    struct Direction {
        var afterFinished = false
        var records: UInt64 = 0
        var keyUpdates = 0
    }

    var clientSecret: [UInt8]?
    var serverSecret: [UInt8]?
    var written = Direction()
    var read = Direction()
    /// The peer asked for a KeyUpdate while OpenSSL still read (ours must answer it).
    var peerRequestedKeyUpdate = false

    /// One line of OpenSSL's key log (`LABEL <client random> <secret>`, hex).
    mutating func keyLog(_ line: UnsafePointer<CChar>) {
        let text = String(cString: line)
        let fields = text.split(separator: " ")
        guard fields.count == 3 else { return }
        switch fields[0] {
        case "CLIENT_TRAFFIC_SECRET_0": clientSecret = Self.bytes(fromHex: fields[2])
        case "SERVER_TRAFFIC_SECRET_0": serverSecret = Self.bytes(fromHex: fields[2])
        default: break
        }
    }

    /// One call of OpenSSL's message callback.
    mutating func message(written isWrite: Bool, contentType: Int32, bytes: UnsafeRawBufferPointer) {
        switch contentType {
        case SSL3_RT_HEADER:
            if isWrite {
                if written.afterFinished { written.records += 1 }
            } else if read.afterFinished {
                read.records += 1
            }
        case SSL3_RT_HANDSHAKE:
            guard let type = bytes.first else { return }
            switch Int32(type) {
            case SSL3_MT_FINISHED:
                if isWrite { written = Direction(afterFinished: true) } else { read = Direction(afterFinished: true) }
            case SSL3_MT_KEY_UPDATE:
                if isWrite {
                    written.keyUpdates += 1
                    written.records = 0
                } else {
                    read.keyUpdates += 1
                    read.records = 0
                    if bytes.count >= 5, bytes[4] == 1 { peerRequestedKeyUpdate = true }
                }
            default: break
            }
        default: break
        }
    }

    private static func bytes(fromHex hex: Substring) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
