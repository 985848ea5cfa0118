extension Duration {
    /// The duration in (fractional) seconds, for JSON and metrics.
    var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
