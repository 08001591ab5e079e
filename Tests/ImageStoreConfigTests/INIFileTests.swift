import ImageStoreConfig
import Testing

@Suite struct INIFileTests {
    private let path = "/etc/imagestore/test.conf"

    @Test func parse_whenSectionsAndKeys_keepsOrderValuesAndLines() throws {
        let file = try INIFile(
            text: """
                [DEFAULT]
                bind_host =   10.0.0.1  
                bind_port=9292

                [glance_store]
                default_backend = fast
                """, path: path)
        #expect(file.sections.map(\.name) == ["DEFAULT", "glance_store"])
        #expect(file.sections.map(\.line) == [1, 5])
        let defaults = try #require(file.section("DEFAULT"))
        #expect(defaults.entries.map(\.key) == ["bind_host", "bind_port"])
        #expect(defaults.entries.map(\.value) == ["10.0.0.1", "9292"])
        #expect(defaults.entries.map(\.line) == [2, 3])
        #expect(file.value(section: "glance_store", key: "default_backend") == "fast")
        #expect(file.path == path)
    }

    @Test func parse_whenCommentsOfBothKinds_ignoresThem() throws {
        let file = try INIFile(
            text: """
                # a hash comment
                ; a semicolon comment
                [DEFAULT]
                  # indented hash comment
                \t; indented semicolon comment
                bind_port = 1234
                #bind_port = 9
                ;bind_port = 8
                """, path: path)
        #expect(file.section("DEFAULT")?.entries.map(\.key) == ["bind_port"])
        #expect(file.value(section: "DEFAULT", key: "bind_port") == "1234")
    }

    @Test func parse_whenValueHasHashAfterIt_keepsItInTheValue() throws {
        // oslo.config has no inline comments.
        let file = try INIFile(text: "[DEFAULT]\nbind_port = 9292 # web\n", path: path)
        #expect(file.value(section: "DEFAULT", key: "bind_port") == "9292 # web")
    }

    @Test func parse_whenContinuationLines_joinsThemWithNewlines() throws {
        let file = try INIFile(
            text: """
                [healthcheck]
                enable_by_file_paths = /a,
                    /b,
                \t/c
                backends = nfs

                detailed = true
                """, path: path)
        #expect(file.value(section: "healthcheck", key: "enable_by_file_paths") == "/a,\n/b,\n/c")
        #expect(file.section("healthcheck")?.entry("enable_by_file_paths")?.line == 2)
        #expect(file.value(section: "healthcheck", key: "backends") == "nfs")
        #expect(file.value(section: "healthcheck", key: "detailed") == "true")
    }

    @Test func parse_whenIndentedLineAfterBlankLine_throwsUnexpectedContinuation() throws {
        let error = try #require(throws: ConfigurationError.self) {
            try INIFile(text: "[DEFAULT]\nbind_port = 1\n\n  more\n", path: path)
        }
        #expect(error.line == 4)
        #expect(error.description.hasPrefix("\(path):4: [DEFAULT]: unexpected continuation line"))
    }

    @Test func parse_whenKeyRepeated_lastWinsAtFirstPosition() throws {
        let file = try INIFile(text: "[DEFAULT]\na = 1\nb = 2\na = 3\n", path: path)
        #expect(file.section("DEFAULT")?.entries.map(\.key) == ["a", "b"])
        #expect(file.value(section: "DEFAULT", key: "a") == "3")
        #expect(file.section("DEFAULT")?.entry("a")?.line == 4)
    }

    @Test func parse_whenSectionRepeated_mergesIt() throws {
        let file = try INIFile(text: "[x]\na = 1\n[y]\nb = 2\n[x]\nc = 3\n", path: path)
        #expect(file.sections.map(\.name) == ["x", "y"])
        #expect(file.section("x")?.entries.map(\.key) == ["a", "c"])
    }

    @Test func value_whenKeyMissingInSection_fallsBackToDefault() throws {
        let file = try INIFile(
            text: """
                [DEFAULT]
                filesystem_store_datadir = /from/default
                weight = 5
                [store]
                weight = 7
                """, path: path)
        #expect(file.value(section: "store", key: "weight") == "7")
        #expect(file.value(section: "store", key: "filesystem_store_datadir") == "/from/default")
        #expect(file.entry(section: "store", key: "filesystem_store_datadir")?.section == "DEFAULT")
        // A section that does not exist still sees [DEFAULT], as in oslo.config.
        #expect(file.value(section: "absent", key: "weight") == "5")
        #expect(file.value(section: "store", key: "nothing") == nil)
    }

    @Test func parse_whenKeyBeforeAnySection_throwsNamingLineAndKey() throws {
        let error = try #require(throws: ConfigurationError.self) {
            try INIFile(text: "# header\nbind_port = 1\n[DEFAULT]\n", path: path)
        }
        #expect(error.line == 2)
        #expect(error.key == "bind_port")
        #expect(error.description == "\(path):2: bind_port: option outside any section (add a [DEFAULT] header above it)")
    }

    @Test(arguments: [
        ("[DEFAULT]\nbind_port: 1\n", 2, "expected \"key = value\""),
        ("[DEFAULT\n", 1, "must end with ]"),
        ("[]\n", 1, "empty section name"),
        ("[DEFAULT]\n= 5\n", 2, "missing option name"),
        ("  indented = 1\n", 1, "unexpected continuation line"),
    ])
    func parse_whenSyntaxError_throwsNamingTheLine(text: String, line: Int, fragment: String) throws {
        let error = try #require(throws: ConfigurationError.self) { try INIFile(text: text, path: path) }
        #expect(error.line == line)
        #expect(error.description.hasPrefix("\(path):\(line): "))
        #expect(error.reason.contains(fragment))
    }

    @Test func parse_whenColonSeparatorAllowed_acceptsPasteStyleLines() throws {
        let file = try INIFile(
            text: "[composite:rootapp]\n/: apiversions\n/v2: apiv2app\nuse = egg:Paste#urlmap\n", path: path,
            allowColonSeparator: true)
        #expect(file.value(section: "composite:rootapp", key: "/v2") == "apiv2app")
        #expect(file.value(section: "composite:rootapp", key: "use") == "egg:Paste#urlmap")
    }

    @Test func parse_whenQuotedValueCRLFAndBOM_unwrapsAndStrips() throws {
        let file = try INIFile(text: "\u{FEFF}[DEFAULT]\r\na = \"quoted value\"\r\nb = 'x'\r\nc = \"half\r\n", path: path)
        #expect(file.value(section: "DEFAULT", key: "a") == "quoted value")
        #expect(file.value(section: "DEFAULT", key: "b") == "x")
        #expect(file.value(section: "DEFAULT", key: "c") == "\"half")
    }

    @Test func load_whenFileMissing_throwsNamingIt() throws {
        try withTemporaryDirectory { dir in
            let missing = dir + "/absent.conf"
            let error = try #require(throws: ConfigurationError.self) { try INIFile.load(path: missing) }
            #expect(error.description == "\(missing): file not found")
        }
    }
}
