/// The one conversion of `Duration` into the units options, messages and metrics use.
extension Duration {
    /// Whole milliseconds (truncated): option values and messages ("did not answer within 500 ms").
    public var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
    /// Milliseconds with their fraction: measurements (request latency, probe round trips).
    public var fractionalMilliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
    /// Seconds with their fraction: Prometheus, GRDB and Foundation APIs.
    public var fractionalSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
