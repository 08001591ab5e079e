import Foundation
import ImageStoreAPI
import Testing

/// `JSONValue.parse` (a parser of its own) accepts and rejects what Foundation's JSONDecoder did, which
/// it replaced on every JSON request body, and reads the same values.
@Suite struct JSONParserTests {
    /// The reference: the decoder `parse` used before.
    static func decoded(_ text: String) -> JSONValue? { try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }

    static let corpus: [String] = [
        #"{}"#, #"[]"#, #"{"a":1}"#, #" {"name" : "x" , "tags" : [ "a" , "b" ] } "#, "{\"a\":1}\n", #"null"#, #"true"#,
        #"false"#, #""text""#, #"0"#, #"-0"#, #"12"#, #"-12"#, #"1.0"#, #"1.5"#, #"1e2"#, #"1E+2"#, #"1e-2"#, #"-1.25e3"#,
        #"9223372036854775807"#, #"-9223372036854775808"#, #"9223372036854775808"#, #"100000000000000000000.0"#,
        #"{"a":"\"\\\/\b\f\n\r\t"}"#, #"{"a":"\u00e9\u20AC\ud83d\ude00"}"#, #"{"a":"é€😀"}"#, #"{"a":"\u0000"}"#,
        #"{"a":{"b":[1,{"c":null}]}}"#, #"{"a":1,"a":2}"#, #"{"a":1,}"#, #"[1,]"#, #"[1,2,]"#, #"{"a":[],"b":{}}"#,
        // Malformed:
        "", " ", #"{"#, #"}"#, #"["#, #"{"a"}"#, #"{"a":}"#, #"{"a" 1}"#, #"{a:1}"#, #"{'a':1}"#, #"{,}"#, #"[,]"#,
        #"{"a":1,,}"#, #"[1,,2]"#, #"[1 2]"#, #"01"#, #"1."#, #".5"#, #"+1"#, #"-"#, #"1e"#, #"1e+"#, #"0x10"#, #"1e400"#,
        #"NaN"#, #"Infinity"#, #"tru"#, #"nul"#, #"truex"#, #""\x""#, #""\u00""#, #""\u00G0""#, #""\ud800""#,
        #""\udc00""#, #""\ud800\u0041""#, "\"a\u{01}b\"", "\"tab\tx\"", #"{"a":1} x"#, #"{"a":1}}"#, #""open"#,
    ]

    @Test func acceptsAndReadsWhatJSONDecoderDid() {
        for text in Self.corpus {
            let parsed = try? JSONValue.parse(Array(text.utf8))
            #expect(parsed == Self.decoded(text), "\(text)")
        }
    }

    @Test func rejectsInvalidUTF8AndDeepNesting() {
        #expect((try? JSONValue.parse([0x22, 0xFF, 0x22])) == nil)
        #expect((try? JSONValue.parse([0x22, 0xC3, 0x22])) == nil)
        #expect((try? JSONValue.parse(Array((String(repeating: "[", count: 600) + String(repeating: "]", count: 600)).utf8))) == nil)
        #expect((try? JSONValue.parse(Array((String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8))) != nil)
    }

    @Test func numbersKeepTheirKind() throws {
        #expect(try JSONValue.parse(Array("1.0".utf8)) == .int(1))
        #expect(try JSONValue.parse(Array("2.5".utf8)) == .double(2.5))
        #expect(try JSONValue.parse(Array("-7".utf8)) == .int(-7))
        #expect(try JSONValue.parse(Array(#"{"a":1,"a":2}"#.utf8)) == ["a": 1])  // the first of duplicate keys
    }
}
