import NIOCore

/// A non-negative span of time as written in mesh config: `250ms`, `2s`, `1m`, `1h`, a
/// decimal such as `1.5s`, or a sum of parts such as `1m30s`.
///
/// Stored as whole nanoseconds; config resolution is one millisecond (finer input is refused
/// rather than silently rounded). `description` is the canonical form: the largest unit that
/// divides the value exactly (`90s` → `90s`, `1500ms` → `1500ms`, `3600s` → `1h`), and it
/// parses back to the same value.
public struct MeshDuration: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let nanoseconds: Int64

    public init(nanoseconds: Int64) {
        precondition(nanoseconds >= 0, "MeshDuration is never negative")
        self.nanoseconds = nanoseconds
    }

    public static func milliseconds(_ value: Int64) -> MeshDuration { MeshDuration(nanoseconds: value * 1_000_000) }
    public static func seconds(_ value: Int64) -> MeshDuration { MeshDuration(nanoseconds: value * 1_000_000_000) }
    public static func minutes(_ value: Int64) -> MeshDuration { .seconds(value * 60) }
    public static func hours(_ value: Int64) -> MeshDuration { .seconds(value * 3600) }
    public static let zero = MeshDuration(nanoseconds: 0)

    /// For NIO timers and scheduled tasks.
    public var timeAmount: TimeAmount { .nanoseconds(nanoseconds) }

    public static func < (lhs: MeshDuration, rhs: MeshDuration) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    /// The hint appended to every "not a duration" message.
    static let formatHint = "use 250ms, 2s, 1m"

    private static let units: [(suffix: String, nanoseconds: Int64)] = [
        ("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000), ("ms", 1_000_000),
    ]

    /// Parses the config form; nil for anything else (no unit, negative, unknown unit,
    /// finer than 1ms, or larger than Int64 nanoseconds).
    public init?(parsing text: String) {
        var rest = Substring(text)
        var total: Int64 = 0
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty else { return nil }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix { $0.isASCII && $0.isLetter }
            rest = rest.dropFirst(unitText.count)
            guard let unit = Self.units.first(where: { $0.suffix == unitText }),
                  let part = Self.nanoseconds(number: number, unit: unit.nanoseconds)
            else { return nil }
            let (sum, overflow) = total.addingReportingOverflow(part)
            guard !overflow else { return nil }
            total = sum
        }
        guard total % 1_000_000 == 0 else { return nil }
        self.nanoseconds = total
    }

    /// `digits[.digits]` times `unit`, exactly, or nil.
    private static func nanoseconds(number: Substring, unit: Int64) -> Int64? {
        let pieces = number.split(separator: ".", omittingEmptySubsequences: false)
        guard pieces.count <= 2, let whole = Int64(pieces[0]) else { return nil }
        var (result, overflow) = whole.multipliedReportingOverflow(by: unit)
        guard !overflow else { return nil }
        if pieces.count == 2 {
            // At most 6 fraction digits: every unit is a multiple of 10^6 ns, so the
            // fraction converts exactly and cannot overflow.
            let fraction = pieces[1]
            guard !fraction.isEmpty, fraction.count <= 6, let digits = Int64(fraction) else { return nil }
            var scale: Int64 = 1
            for _ in 0..<fraction.count { scale *= 10 }
            (result, overflow) = result.addingReportingOverflow(digits * (unit / scale))
            guard !overflow else { return nil }
        }
        return result
    }

    public var description: String {
        if nanoseconds == 0 { return "0s" }
        for unit in Self.units where nanoseconds % unit.nanoseconds == 0 {
            return "\(nanoseconds / unit.nanoseconds)\(unit.suffix)"
        }
        // Only reachable for values built in code below 1ms resolution.
        return "\(nanoseconds / 1_000_000)ms"
    }
}
