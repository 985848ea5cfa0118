import Foundation

/// The answer to one Prometheus instant query (`GET /api/v1/query`) whose result is a
/// vector: each sample's labels and value. Values Prometheus writes as `"NaN"` or `"+Inf"`
/// (a quantile over no requests) are kept as such; the stat rows turn them into "no data".
public struct PrometheusVector: Sendable, Equatable {
    public struct Sample: Sendable, Equatable {
        public var labels: [String: String]
        public var value: Double

        public init(labels: [String: String], value: Double) {
            self.labels = labels
            self.value = value
        }
    }

    public var samples: [Sample]

    public init(samples: [Sample]) { self.samples = samples }

    /// Decodes the HTTP API's JSON envelope; an `"status": "error"` answer or another result
    /// type is an error carrying Prometheus' own message.
    public init(json: String) throws(MeshStatError) {
        struct Envelope: Decodable {
            struct Data: Decodable {
                struct Sample: Decodable {
                    var metric: [String: String]
                    var value: [Value]
                }
                var resultType: String
                var result: [Sample]
            }
            var status: String
            var data: Data?
            var errorType: String?
            var error: String?
        }
        /// `[ <unix time>, "<value>" ]`: a number then a string.
        enum Value: Decodable {
            case number(Double), text(String)
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let number = try? container.decode(Double.self) { self = .number(number) } else {
                    self = .text(try container.decode(String.self))
                }
            }
        }
        let envelope: Envelope
        do {
            envelope = try JSONDecoder().decode(Envelope.self, from: Data(json.utf8))
        } catch {
            throw MeshStatError("Prometheus answered something that is not its query API's JSON: \(json.prefix(200))")
        }
        guard envelope.status == "success", let data = envelope.data else {
            throw MeshStatError("Prometheus refused the query (\(envelope.errorType ?? "error")): \(envelope.error ?? "no reason given")")
        }
        guard data.resultType == "vector" else {
            throw MeshStatError("Prometheus answered a \(data.resultType), not a vector")
        }
        samples = try data.result.map { sample throws(MeshStatError) in
            guard sample.value.count == 2, case .text(let text) = sample.value[1], let value = Self.parse(text) else {
                throw MeshStatError("Prometheus sent a sample without a value: \(sample.metric)")
            }
            return Sample(labels: sample.metric, value: value)
        }
    }

    /// Prometheus' float spelling: decimal, exponent, `NaN`, `+Inf`, `-Inf`.
    static func parse(_ text: String) -> Double? {
        switch text {
        case "NaN": .nan
        case "+Inf", "Inf": .infinity
        case "-Inf": -.infinity
        default: Double(text)
        }
    }
}
