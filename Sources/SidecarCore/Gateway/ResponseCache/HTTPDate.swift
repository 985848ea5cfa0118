/// An HTTP-date (RFC 9110 §5.6.7) read as seconds since the Unix epoch, without Foundation (it
/// runs on the request path: `Expires` and `Date` of a response the gateway may cache). All
/// three forms a recipient must accept: IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, the
/// obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` (a two-digit year more than 50 years
/// ahead is taken as the past century) and asctime `Sun Nov  6 08:49:37 1994`. Anything else
/// is nil; the caller treats an invalid `Expires` as already expired (RFC 9111 §5.3).
enum HTTPDate {
    static func seconds(_ text: String, now: Int64) -> Int64? {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        switch words.count {
        case 6 where words[0].hasSuffix(",") && words[5] == "GMT":  // IMF-fixdate
            guard let day = number(words[1], digits: 2), let year = number(words[3], digits: 4) else { return nil }
            return seconds(year: year, month: words[2], day: day, time: words[4])
        case 4 where words[0].hasSuffix(",") && words[3] == "GMT":  // RFC 850
            let date = words[1].split(separator: "-", omittingEmptySubsequences: false)
            guard date.count == 3, let day = number(date[0], digits: 2), let short = number(date[2], digits: 2) else { return nil }
            let currentYear = civil(days: now / 86_400).year
            var year = currentYear / 100 * 100 + short
            if year > currentYear + 50 { year -= 100 }
            return seconds(year: year, month: date[1], day: day, time: words[2])
        case 5:  // asctime: the day is one or two digits, space-padded
            guard words[2].count <= 2, let day = number(words[2], digits: words[2].count), let year = number(words[4], digits: 4) else {
                return nil
            }
            return seconds(year: year, month: words[1], day: day, time: words[3])
        default:
            return nil
        }
    }

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private static func seconds(year: Int64, month: Substring, day: Int64, time: Substring) -> Int64? {
        guard let monthIndex = months.firstIndex(where: { $0 == month }), (1...31).contains(day) else { return nil }
        let parts = time.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let hour = number(parts[0], digits: 2), let minute = number(parts[1], digits: 2),
            let second = number(parts[2], digits: 2), hour < 24, minute < 60, second < 61
        else { return nil }
        let days = daysFromCivil(year: year, month: Int64(monthIndex + 1), day: day)
        return days * 86_400 + hour * 3600 + minute * 60 + second
    }

    /// Exactly `digits` ASCII digits.
    private static func number(_ text: Substring, digits: Int) -> Int64? {
        guard text.utf8.count == digits, digits > 0 else { return nil }
        var value: Int64 = 0
        for byte in text.utf8 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The year and month of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
    static func civil(days: Int64) -> (year: Int64, month: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month)
    }
}
