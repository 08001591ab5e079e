import Foundation
import ImageStoreAPI
import ImageStoreConfig
import Testing

/// docs/openapi.yaml against the route table the server really builds: every route is documented
/// and every documented operation is served. (What the answers look like is fuzzed by
/// Tests/clients/test_schemathesis.py against a running server.)
@Suite struct OpenAPIDocumentTests {
    struct Route: Hashable, CustomStringConvertible {
        var method: String
        var path: String
        var description: String { "\(method) \(path)" }
    }

    static let documentPath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/openapi.yaml").path

    static let operationKeys: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// The YAML document as JSON, parsed by PyYAML (Swift has no YAML parser in this package).
    static func loadDocument() throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c", "import yaml,json,sys; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))", documentPath,
        ]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Read before waiting: a document larger than the pipe buffer would otherwise block the child.
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3/PyYAML could not read \(documentPath): \(errorText)")
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func documentedRoutes(_ document: [String: Any]) throws -> [Route] {
        let paths = try #require(document["paths"] as? [String: Any], "the document has no paths")
        var routes: [Route] = []
        for (path, item) in paths {
            let item = try #require(item as? [String: Any], "\(path) is not a path item")
            for key in item.keys where operationKeys.contains(key) {
                routes.append(Route(method: key.uppercased(), path: path))
            }
        }
        return routes
    }

    static func serverRoutes() -> [Route] {
        registeredRoutes(configuration: .embeddedDefault(baseDirectory: "/nonexistent/imagestore"))
            .map { Route(method: $0.method, path: $0.path) }
    }

    @Test func everyRegisteredRoute_isDocumented() throws {
        let documented = Set(try Self.documentedRoutes(try Self.loadDocument()))
        let registered = Self.serverRoutes()
        #expect(registered.contains(Route(method: "PUT", path: "/v2/images/{image_id}/file")), "\(registered)")
        let missing = registered.filter { !documented.contains($0) }
        #expect(missing.isEmpty, "served but not in docs/openapi.yaml: \(missing)")
    }

    @Test func everyDocumentedOperation_isRegistered() throws {
        let documented = try Self.documentedRoutes(try Self.loadDocument())
        let registered = Set(Self.serverRoutes())
        let unserved = documented.filter { !registered.contains($0) }
        #expect(unserved.isEmpty, "in docs/openapi.yaml but not served: \(unserved.sorted { $0.description < $1.description })")
    }

    @Test func routeTable_hasNoDuplicates() {
        let registered = Self.serverRoutes()
        let duplicates = Dictionary(grouping: registered, by: { $0 }).filter { $0.value.count > 1 }.keys
        #expect(duplicates.isEmpty, "registered twice: \(Array(duplicates))")
    }

    /// Each `{name}` in a documented path is declared as a path parameter (on the path or the operation).
    @Test func documentedPathTemplates_declareTheirParameters() throws {
        let document = try Self.loadDocument()
        let paths = try #require(document["paths"] as? [String: Any])
        let components = (document["components"] as? [String: Any])?["parameters"] as? [String: Any] ?? [:]
        func name(of parameter: Any) -> (name: String, location: String)? {
            var parameter = parameter as? [String: Any]
            if let ref = parameter?["$ref"] as? String {
                parameter = components[String(ref.split(separator: "/").last ?? "")] as? [String: Any]
            }
            guard let name = parameter?["name"] as? String, let location = parameter?["in"] as? String else { return nil }
            return (name, location)
        }
        for (path, item) in paths {
            let item = try #require(item as? [String: Any])
            let templated = Set(path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) })
            let shared = (item["parameters"] as? [Any] ?? []).compactMap(name).filter { $0.location == "path" }.map(\.name)
            for key in item.keys where Self.operationKeys.contains(key) {
                let operation = try #require(item[key] as? [String: Any])
                let own = (operation["parameters"] as? [Any] ?? []).compactMap(name).filter { $0.location == "path" }.map(\.name)
                #expect(Set(shared + own) == templated, "\(key.uppercased()) \(path): path parameters \(shared + own)")
            }
        }
    }
}
