/// Everything that can be wrong with HTTP/1.1 bytes we frame, each case naming the fault.
///
/// `status` is what the proxy answers when the fault is in a *request* (400, 431, 501, 505);
/// a fault in an upstream *response* is always answered with 502 `upstream-reset` by the caller.
/// `detail` is a short, fixed, human sentence for the `mesh: bad-request: <detail>` body: it
/// never echoes the offending bytes back, so it is safe to log and to send.
public enum HTTPParserError: Error, Sendable, Hashable {
    // Line structure.
    case bareLineFeed(line: Int)
    case bareCarriageReturn(line: Int)
    case obsoleteLineFolding(line: Int)
    case tooManyLeadingEmptyLines

    // Start line.
    case invalidMethod
    case invalidRequestTarget
    case invalidVersion
    case unsupportedVersion
    case invalidStatusLine
    case invalidStatusCode

    // Header fields.
    case invalidHeaderName(line: Int)
    case whitespaceBeforeColon(line: Int)
    case invalidHeaderValue(line: Int)
    case headTooLarge
    case tooManyHeaders

    // Framing and connection semantics.
    case conflictingFraming
    case invalidContentLength
    case duplicateContentLength
    case invalidTransferEncoding
    case chunkedNotFinal
    case unknownTransferCoding
    case transferEncodingInHTTP10
    case invalidConnectionHeader
    case missingHost
    case duplicateHost

    // Chunked body.
    case invalidChunkSize
    case chunkSizeOverflow
    case chunkExtensionTooLong
    case invalidChunkExtension
    case missingChunkDataTerminator
    case invalidTrailer
    case trailersTooLarge

    // Body length.
    case truncatedBody

    /// The status the proxy answers when this fault is found in a request.
    public var status: Int {
        switch self {
        case .headTooLarge, .tooManyHeaders:
            return 431
        case .unknownTransferCoding:
            return 501
        case .unsupportedVersion:
            return 505
        default:
            return 400
        }
    }

    /// A short human explanation, safe to send and log (no request bytes in it).
    public var detail: String {
        switch self {
        case .bareLineFeed(let line): return "bare LF without CR on line \(line)"
        case .bareCarriageReturn(let line): return "bare CR not followed by LF on line \(line)"
        case .obsoleteLineFolding(let line): return "obsolete line folding (line starts with whitespace) on line \(line)"
        case .tooManyLeadingEmptyLines: return "more than one empty line before the request line"
        case .invalidMethod: return "method is not a token"
        case .invalidRequestTarget: return "request-target is empty or has spaces, controls or non-ASCII bytes"
        case .invalidVersion: return "HTTP version is malformed"
        case .unsupportedVersion: return "only HTTP/1.1 and HTTP/1.0 are supported"
        case .invalidStatusLine: return "status line is malformed"
        case .invalidStatusCode: return "status code is not three digits from 100 to 999"
        case .invalidHeaderName(let line): return "header name is not a token on line \(line)"
        case .whitespaceBeforeColon(let line): return "whitespace between header name and colon on line \(line)"
        case .invalidHeaderValue(let line): return "control character in header value on line \(line)"
        case .headTooLarge: return "message head too large"
        case .tooManyHeaders: return "too many header fields"
        case .conflictingFraming: return "both Content-Length and Transfer-Encoding"
        case .invalidContentLength: return "Content-Length is not a single decimal number"
        case .duplicateContentLength: return "more than one Content-Length"
        case .invalidTransferEncoding: return "Transfer-Encoding is malformed"
        case .chunkedNotFinal: return "Transfer-Encoding does not end with a single chunked"
        case .unknownTransferCoding: return "unknown transfer coding"
        case .transferEncodingInHTTP10: return "Transfer-Encoding in an HTTP/1.0 request"
        case .invalidConnectionHeader: return "Connection is not a list of tokens"
        case .missingHost: return "HTTP/1.1 request without Host"
        case .duplicateHost: return "more than one Host"
        case .invalidChunkSize: return "chunk size is not hexadecimal"
        case .chunkSizeOverflow: return "chunk size too large"
        case .chunkExtensionTooLong: return "chunk extension too long"
        case .invalidChunkExtension: return "control character in chunk extension"
        case .missingChunkDataTerminator: return "chunk data not followed by CRLF"
        case .invalidTrailer: return "trailer section is malformed"
        case .trailersTooLarge: return "trailer section too large"
        case .truncatedBody: return "connection closed before the body ended"
        }
    }
}
