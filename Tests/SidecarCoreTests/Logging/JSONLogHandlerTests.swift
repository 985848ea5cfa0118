import Foundation
import Logging
import Testing

@testable import SidecarCore

/// `--log-format json`: one JSON object per event, metadata as string fields, escaping right.
@Suite struct JSONLogHandlerTests {
    @Test func anEventIsOneJSONObjectWithItsMetadata() throws {
        let line = JSONLogHandler.line(
            time: "2026-12-05T00:00:00.000Z", level: .warning, logger: "sidecar",
            message: "heartbeat failed: \"quoted\"\nsecond line",
            metadata: ["error": .string("refused"), "retryIn": .stringConvertible(250), "message": "ignored"])
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object == [
            "time": "2026-12-05T00:00:00.000Z", "level": "warning", "logger": "sidecar",
            "message": "heartbeat failed: \"quoted\"\nsecond line", "error": "refused", "retryIn": "250",
        ])
    }

    @Test func theTimeIsRFC3339UTCWithMilliseconds() {
        #expect(JSONLogHandler.now().wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil)
    }

    @Test func theOptionsAreCheckedWithTheAllowedWords() {
        guard case .success(let (format, level)) = SidecarLogging.parse(format: "text", level: "debug") else {
            Issue.record("text/debug must parse")
            return
        }
        #expect(format == .text && level == .debug)
        guard case .failure(let error) = SidecarLogging.parse(format: "xml", level: "info") else {
            Issue.record("xml must be refused")
            return
        }
        #expect(error.description.contains("json or text"))
        guard case .failure(let levelError) = SidecarLogging.parse(format: "json", level: "loud") else {
            Issue.record("loud must be refused")
            return
        }
        #expect(levelError.description.contains("warning"))
    }
}
