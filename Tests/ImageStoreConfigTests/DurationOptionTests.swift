import ImageStoreCore
import Testing

@testable import ImageStoreConfig

/// The one parser of duration options (`OptionValue.seconds`, `.milliseconds`): Glance's seconds with
/// their fractions, the bounds each option had as a `Double`, and the same error text as before.
@Suite struct DurationOptionTests {
    static let path = "/etc/imagestore/imagestore.conf"

    private func value(_ text: String, key: String = "shutdown_drain_timeout") -> OptionValue {
        OptionValue(path: Self.path, entry: INIFile.Entry(section: "DEFAULT", key: key, value: text, line: 7))
    }

    @Test(arguments: [
        ("30", Duration.seconds(30)), ("2.5", .milliseconds(2500)), ("0.1", .milliseconds(100)),
        ("0.05", .milliseconds(50)), ("0.0005", .microseconds(500)), ("1e3", .seconds(1000)), ("0", .zero),
        ("+12.5", .milliseconds(12_500)),
    ])
    func seconds_fractionsAreExactToTheNanosecond(text: String, expected: Duration) throws {
        #expect(try value(text).seconds(greaterThan: 0, orEqual: true) == expected)
    }

    /// A value past what nanoseconds hold (~292 years) stays there instead of trapping downstream.
    @Test func seconds_pastInt64Nanoseconds_saturates() throws {
        #expect(try value("1e300").seconds(greaterThan: 0) == .nanoseconds(Int64.max))
        #expect(try value("9223372036").seconds(greaterThan: 0) == .seconds(9_223_372_036))
    }

    @Test(arguments: [
        ("0", 0.0, false, "\"0\" is not a number of seconds greater than 0"),
        ("-0.5", 0, true, "\"-0.5\" is not a number of seconds at least 0"),
        ("0.999", 1, true, "\"0.999\" is not a number of seconds at least 1"),
        ("0.5", 1.5, false, "\"0.5\" is not a number of seconds greater than 1.5"),
        ("abc", 0, false, "\"abc\" is not a number of seconds greater than 0"),
        ("5s", 0, false, "\"5s\" is not a number of seconds greater than 0"),
        ("inf", 0, false, "\"inf\" is not a number of seconds greater than 0"),
        ("nan", 0, true, "\"nan\" is not a number of seconds at least 0"),
    ])
    func seconds_outOfBoundsOrNotANumber_namesFileLineAndKey(text: String, minimum: Double, orEqual: Bool, reason: String) {
        #expect(throws: ConfigurationError(path: Self.path, line: 7, section: "DEFAULT", key: "shutdown_drain_timeout", reason: reason)) {
            try value(text).seconds(greaterThan: minimum, orEqual: orEqual)
        }
    }

    @Test func seconds_atTheInclusiveBound_isAccepted() throws {
        #expect(try value("1").seconds(greaterThan: 1, orEqual: true) == .seconds(1))
    }

    @Test func milliseconds_wholeOnly_sameErrorAsAnInteger() throws {
        #expect(try value("1500", key: "check_timeout").milliseconds(in: 1...Int.max) == .milliseconds(1500))
        #expect(throws: ConfigurationError(path: Self.path, line: 7, section: "DEFAULT", key: "check_timeout", reason: "\"1.5\" is not an integer of at least 1")) {
            try value("1.5", key: "check_timeout").milliseconds(in: 1...Int.max)
        }
        #expect(throws: ConfigurationError(path: Self.path, line: 7, section: "DEFAULT", key: "check_timeout", reason: "\"0\" is not an integer of at least 1")) {
            try value("0", key: "check_timeout").milliseconds(in: 1...Int.max)
        }
    }

    /// Through the file: every seconds option keeps its fraction and its documented default.
    @Test func parse_secondsOptions_fractionsAndDefaults() throws {
        let text = """
            [DEFAULT]
            shutdown_drain_timeout = 0.25
            client_socket_timeout = 0
            replica_lease_time = 1.5
            [database]
            pool_timeout = 0.1
            [glance_store]
            mount_guard_interval = 0.3
            mount_guard_max_age = 0
            [healthcheck]
            interval = 0.05
            check_timeout = 750
            """
        let config = try ServiceConfiguration.parse(text: text, path: Self.path)
        #expect(config.drainTimeout == .milliseconds(250))
        #expect(config.clientSocketTimeout == .zero)
        #expect(config.replicaLeaseTime == .milliseconds(1500))
        #expect(config.databaseOptions.poolTimeout == .milliseconds(100))
        #expect(config.databaseOptions.sqliteTimeout == .milliseconds(100))
        #expect(config.store.guardInterval == .milliseconds(300))
        #expect(config.store.guardMaxAge == .zero)
        #expect(config.healthcheck.checkInterval == .milliseconds(50))
        #expect(config.healthcheck.checkTimeout == .milliseconds(750))

        let defaults = try ServiceConfiguration.parse(text: "", path: Self.path)
        #expect(defaults.clientSocketTimeout == .seconds(900) && defaults.replicaLeaseTime == .seconds(30))
        #expect(defaults.databaseOptions.poolTimeout == nil)
        #expect(defaults.databaseOptions.postgresTimeout == .seconds(3) && defaults.databaseOptions.sqliteTimeout == .seconds(30))
    }
}
