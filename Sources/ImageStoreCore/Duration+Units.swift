/// The one conversion of `Duration` into the units options, messages and metrics use.
extension Duration {
    /// Whole milliseconds (truncated): option values and messages ("did not answer within 500 ms").
    public var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
    /// Milliseconds with their fraction: measurements (request latency, probe round trips).
    public var fractionalMilliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
    /// Seconds with their fraction: Prometheus, GRDB and Foundation APIs.
    public var fractionalSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    /// Whole nanoseconds (truncated) for the APIs that wait in nanoseconds (Dispatch, NIO's `TimeAmount`):
    /// never negative (a deadline already passed waits 0) and saturating at `Int64.max` (~292 years), where
    /// the plain product would trap.
    public var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return .max }
        let (sum, carry) = product.addingReportingOverflow(attoseconds / 1_000_000_000)
        return carry ? .max : sum
    }
}
