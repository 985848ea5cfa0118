import Foundation

/// `stat`'s two outputs: aligned tables (services, then edges) and JSON.
extension MeshStat {
    /// Two tables as `linkerd viz stat` prints them; `-` where there is no data.
    public var table: String {
        var out = ""
        var serviceRows = [["SERVICE", "SIDECARS"] + Self.goldenHeader]
        for row in services {
            serviceRows.append([row.service, row.stats.sidecars.map(String.init) ?? "-"] + Self.golden(row.stats))
        }
        if services.isEmpty {
            out += "No service has reported to Prometheus at \(prometheus) yet (is it scraping the sidecars?).\n"
        } else {
            out += Self.render(serviceRows)
        }
        var edgeRows = [["FROM", "TO", "SIDECARS"] + Self.goldenHeader]
        for row in edges {
            edgeRows.append([row.from, row.to, row.stats.sidecars.map(String.init) ?? "-"] + Self.golden(row.stats))
        }
        out += "\n"
        out += edges.isEmpty ? "No caller -> callee traffic in the last \(window).\n" : Self.render(edgeRows)
        return out
    }

    /// Pretty-printed JSON with sorted keys; missing numbers are null.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // Encodable's synthesized code skips nil optionals; stat's readers want every key.
        let data = (try? encoder.encode(JSONForm(self))) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    static let goldenHeader = ["SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "RETRIES/S", "BREAKERS_OPEN", "EJECTED"]

    static func golden(_ stats: Golden) -> [String] {
        [
            stats.successRate.map { String(format: "%.2f%%", $0 * 100) } ?? "-",
            String(format: "%.1f", stats.requestsPerSecond),
            milliseconds(stats.latencyP50Ms), milliseconds(stats.latencyP95Ms), milliseconds(stats.latencyP99Ms),
            String(format: "%.1f", stats.retriesPerSecond),
            String(stats.openBreakers), String(stats.ejectedEndpoints),
        ]
    }

    static func milliseconds(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value < 10 ? String(format: "%.1fms", value) : String(format: "%.0fms", value)
    }

    static func render(_ rows: [[String]]) -> String {
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 2, withPad: " ", startingAt: 0)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }
}

/// The JSON shape: every key present, nil as null.
private struct JSONForm: Encodable {
    let stat: MeshStat
    init(_ stat: MeshStat) { self.stat = stat }

    struct Row: Encodable {
        let names: [(String, String)]
        let stats: MeshStat.Golden

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ string: String) { stringValue = string }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            for (key, value) in names { try container.encode(value, forKey: Key(key)) }
            try container.encode(stats.sidecars, forKey: Key("sidecars"))
            try container.encode(stats.requestsPerSecond, forKey: Key("requestsPerSecond"))
            try container.encode(stats.successRate, forKey: Key("successRate"))
            try container.encode(stats.latencyP50Ms, forKey: Key("latencyP50Ms"))
            try container.encode(stats.latencyP95Ms, forKey: Key("latencyP95Ms"))
            try container.encode(stats.latencyP99Ms, forKey: Key("latencyP99Ms"))
            try container.encode(stats.retriesPerSecond, forKey: Key("retriesPerSecond"))
            try container.encode(stats.openBreakers, forKey: Key("openBreakers"))
            try container.encode(stats.ejectedEndpoints, forKey: Key("ejectedEndpoints"))
        }
    }

    enum CodingKeys: String, CodingKey { case prometheus, window, services, edges }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(stat.prometheus, forKey: .prometheus)
        try container.encode(stat.window, forKey: .window)
        try container.encode(stat.services.map { Row(names: [("service", $0.service)], stats: $0.stats) }, forKey: .services)
        try container.encode(stat.edges.map { Row(names: [("from", $0.from), ("to", $0.to)], stats: $0.stats) }, forKey: .edges)
    }
}
