import ImageStoreCore
import Testing

/// The one conversion of `Duration` into the units options, messages and waits use.
@Suite struct DurationUnitsTests {
    @Test func wholeNanoseconds_truncatesBelowANanosecond() {
        #expect(Duration.seconds(2).wholeNanoseconds == 2_000_000_000)
        #expect(Duration.milliseconds(1500).wholeNanoseconds == 1_500_000_000)
        #expect(Duration.nanoseconds(7).wholeNanoseconds == 7)
        #expect((Duration.nanoseconds(7) + .init(secondsComponent: 0, attosecondsComponent: 999_999_999)).wholeNanoseconds == 7)
        #expect(Duration.zero.wholeNanoseconds == 0)
    }

    @Test func wholeNanoseconds_isNeverNegative() {
        #expect(Duration.nanoseconds(-1).wholeNanoseconds == 0)
        #expect(Duration.milliseconds(-1500).wholeNanoseconds == 0)
        #expect(Duration.seconds(Int64.min).wholeNanoseconds == 0)
        // Less than a nanosecond below zero is still not negative.
        #expect(Duration(secondsComponent: 0, attosecondsComponent: -1).wholeNanoseconds == 0)
    }

    @Test func wholeNanoseconds_saturatesInsteadOfTrapping() {
        #expect(Duration.seconds(Int64.max).wholeNanoseconds == .max)
        #expect(Duration.seconds(9_223_372_036).wholeNanoseconds == 9_223_372_036_000_000_000)
        #expect(Duration.seconds(9_223_372_037).wholeNanoseconds == .max)
        #expect((Duration.seconds(9_223_372_036) + .nanoseconds(854_775_807)).wholeNanoseconds == .max)
        #expect((Duration.seconds(9_223_372_036) + .milliseconds(900)).wholeNanoseconds == .max)
    }

    @Test func wholeMilliseconds_andFractions() {
        #expect(Duration.milliseconds(1500).wholeMilliseconds == 1500)
        #expect(Duration.microseconds(1999).wholeMilliseconds == 1)
        #expect(Duration.milliseconds(1500).fractionalSeconds == 1.5)
        #expect(Duration.microseconds(2500).fractionalMilliseconds == 2.5)
    }
}
