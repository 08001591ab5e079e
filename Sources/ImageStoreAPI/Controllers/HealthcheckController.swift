import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreConfig
import ImageStoreCore
import ImageStoreHealth
import NIOCore

/// `/healthcheck` (oslo.middleware's healthcheck app), `/readyz` and `/livez`. No authentication.
///
/// Every answer comes from memory: the `HealthMonitor` runs the backends in the background, so a
/// hung NFS or FUSE mount makes these answer 503 quickly instead of not answering at all.
struct HealthcheckController {
    let monitor: HealthMonitor
    /// `detailed`, `allowed_source_ranges` (empty: anyone may ask; validated by the configuration reader),
    /// `ignore_proxied_requests`: read per request, as SIGHUP may replace them.
    let options: Reloadable<HealthcheckOptions>
    let facts: ServerFacts

    init(monitor: HealthMonitor, options: Reloadable<HealthcheckOptions>, facts: ServerFacts = ServerFacts()) {
        self.monitor = monitor
        self.options = options
        self.facts = facts
    }

    func addRoutes(to routes: RouteTable) {
        routes.add(.get, "/healthcheck") { request, context in healthcheck(request, context, head: false) }
        routes.add(.head, "/healthcheck") { request, context in healthcheck(request, context, head: true) }
        // Kubernetes readiness: the same verdict, for any caller (kubelet probes from the node's
        // address), never detailed.
        routes.add(.get, "/readyz") { request, context in readiness(request, context, head: false) }
        routes.add(.head, "/readyz") { request, context in readiness(request, context, head: true) }
        // Kubernetes liveness: the event loop answers. Never looks at storage, so a pod whose NFS is
        // down is not restarted (it could not start any better) but only taken out of the Service.
        routes.add(.get, "/livez") { _, _ in Self.response(.ok, body: "OK") }
        routes.add(.head, "/livez") { _, _ in Self.response(.ok, body: "") }
    }

    private func healthcheck(_ request: Request, _ context: AppRequestContext, head: Bool) -> Response {
        // oslo "ignores" such requests (no response from the middleware); as an app there is
        // nothing behind it, so the refusal is an explicit 403.
        let options = options.value
        guard isAllowed(context.remoteAddress, options.allowedSourceRanges) else { return Self.response(.forbidden, body: "Forbidden") }
        if options.ignoreProxiedRequests && Self.isProxied(request.headers) { return Self.response(.forbidden, body: "Forbidden") }
        return answer(request, context, head: head, renderer: HealthcheckRenderer(detailed: options.detailed, facts: facts))
    }

    private func readiness(_ request: Request, _ context: AppRequestContext, head: Bool) -> Response {
        answer(request, context, head: head, renderer: HealthcheckRenderer(detailed: false, facts: facts))
    }

    /// oslo's `process_request` from here on: 200/503 (HEAD 204/503, empty body), body by Accept.
    private func answer(
        _ request: Request, _ context: AppRequestContext, head: Bool, renderer: HealthcheckRenderer
    )
        -> Response
    {
        let report = monitor.report(port: context.localPort)
        if head {
            return Self.response(report.healthy ? .noContent : .serviceUnavailable, body: "")
        }
        let format = HealthcheckFormat.negotiate(accept: request.headers[.accept])
        return Self.response(
            report.healthy ? .ok : .serviceUnavailable, body: renderer.body(report, format: format), contentType: format.rawValue)
    }

    private func isAllowed(_ address: SocketAddress?, _ allowedNetworks: [IPNetwork]) -> Bool {
        guard !allowedNetworks.isEmpty else { return true }
        guard let ip = address?.ipAddress else { return false }
        return allowedNetworks.contains { $0.contains(address: ip) }
    }

    /// oslo's list: X-Forwarded, -Proto, -Host, -For, -Prefix, with a non-empty value.
    static func isProxied(_ headers: HTTPFields) -> Bool {
        proxyHeaders.contains { name in headers[values: name].contains { !$0.isEmpty } }
    }

    private static let proxyHeaders: [HTTPField.Name] = [
        "X-Forwarded", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-For", "X-Forwarded-Prefix",
    ].map { HTTPField.Name($0)! }

    static func response(_ status: HTTPResponse.Status, body: String, contentType: String = "text/plain") -> Response {
        Response(
            status: status, headers: [.contentType: contentType + "; charset=UTF-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
