import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The sidecar's operational log as JSON lines on stderr (`--log-format json`, the default),
/// so a log pipeline reads them without parsing text: one object per event with `time` (UTC,
/// RFC 3339 with milliseconds), `level`, `logger`, `message`, then the metadata as string
/// fields (a metadata key never replaces one of those four).
///
/// Off the request path (access logs are written elsewhere, on stdout). Each line goes out in
/// one `write(2)`, so lines from several threads never interleave.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let fileDescriptor: Int32

    public init(label: String, fileDescriptor: Int32 = 2) {
        self.label = label
        self.fileDescriptor = fileDescriptor
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let own = event.metadata { fields.merge(own) { $1 } }
        var line = Self.line(
            time: Self.now(), level: event.level, logger: label, message: event.message.description, metadata: fields)
        line.append("\n")
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(fileDescriptor, $0.baseAddress, $0.count) }
    }

    /// One event as a JSON object (no newline): pure, for tests.
    static func line(
        time: String, level: Logger.Level, logger: String, message: String, metadata: Logger.Metadata
    ) -> String {
        var fields = [
            ("time", time), ("level", level.rawValue), ("logger", logger), ("message", message),
        ]
        let reserved: Set<String> = ["time", "level", "logger", "message"]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) where !reserved.contains(key) {
            fields.append((key, Self.text(value)))
        }
        return "{" + fields.map { "\(ConfigValue.quoted($0.0)):\(ConfigValue.quoted($0.1))" }.joined(separator: ",") + "}"
    }

    private static func text(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let value): value.description
        case .array, .dictionary: value.description
        }
    }

    /// `2026-12-05T00:10:44.123Z`.
    static func now() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = spec.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
            + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
            + ".\(pad(Int32(spec.tv_nsec / 1_000_000), 3))Z"
    }
}

/// `--log-format` and `--log-level`: checks the words and bootstraps swift-log once.
public enum SidecarLogging {
    public enum Format: String, CaseIterable, Sendable {
        case json
        case text
    }

    /// The format and level for these words, or a message naming what is allowed.
    public static func parse(format: String, level: String) -> Result<(Format, Logger.Level), LoggingOptionError> {
        guard let parsedFormat = Format(rawValue: format) else {
            return .failure(LoggingOptionError(description: "--log-format: use json or text"))
        }
        guard let parsedLevel = Logger.Level(rawValue: level) else {
            let levels = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            return .failure(LoggingOptionError(description: "--log-level: use one of \(levels)"))
        }
        return .success((parsedFormat, parsedLevel))
    }

    public static func bootstrap(_ format: Format, level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            switch format {
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }

    public struct LoggingOptionError: Error, CustomStringConvertible {
        public let description: String
    }
}
