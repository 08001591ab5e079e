import AsyncHTTPClient
import Foundation
import ImageStoreConfig
import ImageStoreCore
import ImageStorePolicy
import Logging
import NIOCore
import NIOHTTP1

/// Validates tokens with Keystone v3, as keystonemiddleware's `auth_token` does with `auth_type =
/// password`: the service logs in with its own user (`POST /v3/auth/tokens`), keeps that token until
/// shortly before it expires, and asks `GET /v3/auth/tokens` (`X-Subject-Token`) about each caller's
/// token. Keystone's 404 means the token is not valid (401 to the caller); anything that keeps Keystone
/// from answering — refused connections, 5xx, silence — is `.dependencyUnavailable` (503) once
/// `http_connect_timeout` has passed, never a hung request.
public actor KeystoneTokenValidator: TokenValidator {
    nonisolated let options: KeystoneAuthOptions
    nonisolated let http: HTTPClient
    nonisolated let logger: Logger

    /// The service's own login: its token, when it stops being used, and where tokens are validated.
    struct ServiceSession: Sendable {
        var token: String
        var refreshAt: Date
        var validateURL: String
    }

    private var session: ServiceSession?
    private var login: Task<ServiceSession, any Error>?

    /// How long before its expiry the service token is replaced (less for short-lived tokens).
    static let refreshMargin: TimeInterval = 120
    /// Keystone's answers are small; anything larger is not Keystone.
    static let maxBody = 8 << 20

    public init(options: KeystoneAuthOptions, httpClient: HTTPClient, logger: Logger) {
        self.options = options
        self.http = httpClient
        self.logger = logger
    }

    /// An `HTTPClient` configured for Keystone: connect timeout, TLS from `cafile`/`insecure`, no
    /// redirects. The caller shuts it down (`HTTPClientService`).
    public static func makeHTTPClient(_ options: KeystoneAuthOptions) throws -> HTTPClient {
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: try KeystoneTLS.configuration(options),
            redirectConfiguration: .disallow,
            timeout: .init(connect: .nanoseconds(options.httpConnectTimeout.wholeNanoseconds)))
        configuration.httpVersion = .http1Only
        // Fail a refused connection at once; `send` retries `http_request_max_retries` times itself, as
        // keystonemiddleware does (the client's own retries would last until the deadline).
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    // MARK: TokenValidator

    public nonisolated func validate(_ token: String, allowExpired: Bool) async throws -> ValidatedToken {
        let outcome = await value(within: options.httpConnectTimeout, cancelAtDeadline: true) { () -> Result<ValidatedToken, any Error> in
            do { return .success(try await self.validateNow(token, allowExpired: allowExpired)) } catch { return .failure(error) }
        }
        guard let outcome else {
            // Seconds as a Double, as these read before the option was a Duration ("10.0 s").
            let seconds = options.httpConnectTimeout.fractionalSeconds
            logger.error("Keystone did not answer in time", metadata: ["timeout_s": "\(seconds)"])
            throw ImageStoreError(
                .dependencyUnavailable, "The Keystone service is temporarily unavailable: no answer within \(seconds) s.")
        }
        return try outcome.get()
    }

    private nonisolated func validateNow(_ token: String, allowExpired: Bool) async throws -> ValidatedToken {
        var retriedLogin = false
        while true {
            let session = try await currentSession()
            var url = session.validateURL + "?nocatalog"
            if allowExpired { url += "&allow_expired=1" }
            let response = try await send(
                .GET, url, headers: [("X-Auth-Token", session.token), ("X-Subject-Token", token.trimmingCharacters(in: .whitespaces))])
            switch response.status.code {
            case 200:
                do {
                    return try JSONDecoder().decode(KeystoneTokenDocument.self, from: Data(response.body.readableBytesView)).validated()
                } catch {
                    throw unavailable("Keystone's token document could not be read: \(error)")
                }
            case 400, 404:
                throw ImageStoreError(.unauthorized, "The request you have made requires authentication.")
            case 401 where !retriedLogin:
                // Our own token was revoked or expired early: log in again, once.
                await forgetSession(session.token)
                retriedLogin = true
            default:
                throw unavailable("Keystone answered \(response.status.code) while validating a token")
            }
        }
    }

    // MARK: The service's own token

    /// The service's session, logging in (once, whoever asks meanwhile waits for the same login) when
    /// there is none or it is about to expire.
    func currentSession() async throws -> ServiceSession {
        if let session, session.refreshAt > Date() { return session }
        if let login { return try await login.value }
        let task = Task { try await self.logIn() }
        login = task
        defer { login = nil }
        let fresh = try await task.value
        session = fresh
        return fresh
    }

    private func forgetSession(_ token: String) {
        if session?.token == token { session = nil }
    }

    private nonisolated func logIn() async throws -> ServiceSession {
        let url = Self.tokensURL(options.authURL)
        let response = try await send(.POST, url, headers: [("Content-Type", "application/json")], body: try loginBody())
        guard response.status == .created || response.status == .ok else {
            logger.error(
                "the service user cannot log in to Keystone: check [keystone_authtoken]",
                metadata: ["status": "\(response.status.code)", "auth_url": "\(options.authURL)", "username": "\(options.username)"])
            throw unavailable("the service could not authenticate with Keystone (\(response.status.code))")
        }
        guard let token = response.headers.first(name: "X-Subject-Token"), !token.isEmpty else {
            throw unavailable("Keystone's login answer has no X-Subject-Token")
        }
        let document: KeystoneTokenDocument
        do {
            document = try JSONDecoder().decode(KeystoneTokenDocument.self, from: Data(response.body.readableBytesView))
        } catch {
            throw unavailable("Keystone's login answer could not be read: \(error)")
        }
        guard let expires = KeystoneTokenDocument.date(document.token.expires_at) else {
            throw unavailable("Keystone's login answer has no expiry")
        }
        let refreshAt = Self.refreshTime(expiresAt: expires, now: Date())
        let endpoint = document.identityEndpoint(interface: options.interface, region: options.regionName)
        logger.info(
            "service logged in to Keystone",
            metadata: ["expires_at": "\(document.token.expires_at)", "identity_endpoint": "\(endpoint ?? options.authURL)"])
        return ServiceSession(token: token, refreshAt: refreshAt, validateURL: Self.tokensURL(endpoint ?? options.authURL))
    }

    private nonisolated func loginBody() throws -> ByteBuffer {
        func domain(id: String?, name: String?) -> [String: String]? {
            if let id { return ["id": id] }
            return name.map { ["name": $0] }
        }
        var user: [String: Any] = ["name": options.username, "password": options.password]
        user["domain"] = domain(id: options.userDomainID, name: options.userDomainName) ?? ["id": "default"]
        var project: [String: Any] = [:]
        if let id = options.projectID {
            project["id"] = id
        } else {
            project["name"] = options.projectName
            project["domain"] = domain(id: options.projectDomainID, name: options.projectDomainName) ?? ["id": "default"]
        }
        let body: [String: Any] = [
            "auth": ["identity": ["methods": ["password"], "password": ["user": user]], "scope": ["project": project]]
        ]
        return ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))
    }

    /// When the service stops using its token: `refreshMargin` before it expires, or halfway through
    /// its remaining life for a token that lives shorter than twice the margin.
    static func refreshTime(expiresAt: Date, now: Date) -> Date {
        let lifetime = expiresAt.timeIntervalSince(now)
        return expiresAt.addingTimeInterval(-min(refreshMargin, max(0, lifetime / 2)))
    }

    /// `<base>/v3/auth/tokens` for an auth URL or catalog URL given with or without its `/v3`.
    static func tokensURL(_ base: String) -> String {
        var url = base
        while url.hasSuffix("/") { url.removeLast() }
        return url.hasSuffix("/v3") ? url + "/auth/tokens" : url + "/v3/auth/tokens"
    }

    // MARK: HTTP

    struct Answer: Sendable {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    /// One request, retried `http_request_max_retries` times when the connection fails (a refused or
    /// reset connection), with a short backoff. Every request says `Connection: close`: a Keystone
    /// under uWSGI closes connections without saying so, and a reused one would fail now and then.
    private nonisolated func send(
        _ method: HTTPMethod, _ url: String, headers: [(String, String)], body: ByteBuffer? = nil
    ) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.headers.add(name: "Connection", value: "close")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "imagestore-keystone")
        if let body { request.body = .bytes(body) }
        let timeout = TimeAmount.nanoseconds(options.httpConnectTimeout.wholeNanoseconds)
        var attempt = 0
        while true {
            do {
                let response = try await http.execute(request, timeout: timeout, logger: logger)
                let body = try await response.body.collect(upTo: Self.maxBody)
                return Answer(status: response.status, headers: response.headers, body: body)
            } catch {
                if Task.isCancelled { throw CancellationError() }
                guard attempt < options.httpRequestMaxRetries else {
                    logger.error("cannot reach Keystone", metadata: ["url": "\(url)", "error": "\(error)"])
                    throw unavailable("cannot reach Keystone at \(url): \(error)")
                }
                attempt += 1
                logger.warning("Keystone request failed, retrying", metadata: ["url": "\(url)", "attempt": "\(attempt)", "error": "\(error)"])
                try await Task.sleep(for: .milliseconds(100 << min(attempt - 1, 4)))
            }
        }
    }

    private nonisolated func unavailable(_ detail: String) -> ImageStoreError {
        logger.error("Keystone unavailable", metadata: ["detail": "\(detail)"])
        return ImageStoreError(.dependencyUnavailable, "The Keystone service is temporarily unavailable.")
    }
}
