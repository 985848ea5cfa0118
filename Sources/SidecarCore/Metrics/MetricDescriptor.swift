/// What a metric family is: its name, HELP text and type, as written on its `# HELP` and
/// `# TYPE` lines. Names are validated once, when the family is declared.
public struct MetricDescriptor: Sendable, Hashable {
    /// The Prometheus metric types this exposition writes.
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    public let name: String
    public let help: String
    public let kind: Kind
    public let labelNames: [String]

    public init(_ name: String, _ kind: Kind, labels: [String] = [], help: String) {
        precondition(MetricDescriptor.isValidName(name, allowColon: true), "invalid metric name \(name)")
        precondition(kind != .counter || name.hasSuffix("_total"), "counter \(name) must end in _total")
        precondition(kind != .histogram || !labels.contains("le"), "histogram \(name) cannot use label le")
        for label in labels {
            precondition(LabelSet.isValidName(label), "invalid label name \(label) on \(name)")
        }
        self.name = name
        self.help = help
        self.kind = kind
        labelNames = labels
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names; label names take no colon.
    static func isValidName(_ name: String, allowColon: Bool) -> Bool {
        guard let first = name.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else {
            return false
        }
        return name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
                true
            case UInt8(ascii: ":"): allowColon
            default: false
            }
        }
    }
}
