import ImageStoreCore
import Testing

/// Runs `body` and checks it throws an `ImageStoreError` with `code`; returns the error.
@discardableResult
public func expectError<T>(
    _ code: ImageStoreError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T
) async -> ImageStoreError? {
    do {
        _ = try await body()
        Issue.record("expected \(code), nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as ImageStoreError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected ImageStoreError \(code), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
