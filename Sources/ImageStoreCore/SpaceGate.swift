import Foundation
import Synchronization

/// `filesystem_store_reserved_space`: bytes of the store's filesystem that uploads must leave free,
/// given in bytes or as a percentage of its size.
public enum ReservedSpace: Sendable, Equatable, CustomStringConvertible {
    case bytes(Int64)
    /// 0 ..< 100.
    case percent(Double)

    public static let none = ReservedSpace.bytes(0)

    /// The reserve in bytes for a filesystem of `total` bytes.
    public func bytes(ofTotal total: Int64) -> Int64 {
        switch self {
        case .bytes(let bytes): bytes
        case .percent(let percent): Int64((Double(total) * percent / 100).rounded(.up))
        }
    }

    public var isNone: Bool {
        switch self {
        case .bytes(let bytes): bytes == 0
        case .percent(let percent): percent == 0
        }
    }

    public var description: String {
        switch self {
        case .bytes(let bytes): "\(bytes) bytes"
        case .percent(let percent): percent == percent.rounded() ? "\(Int64(percent))%" : "\(percent)%"
        }
    }
}

/// Space before bytes: admits a write only when it fits in the store's free space above the reserve,
/// before a byte of it is written, and stops a write of unknown size as it reaches the reserve.
///
/// Written against a free-space measurement only (the NFS server's statvfs through libnfs, or a local
/// statvfs, both under the guard's deadline), so uploads, stage and import share it. Space promised to
/// writes in flight with a declared size and not written yet counts as used, so two concurrent uploads
/// cannot both take the same free bytes.
public final class SpaceGate: Sendable {
    public let reserve: ReservedSpace
    private let measure: @Sendable () async throws -> StoreCapacity
    /// Per admitted write: bytes declared and not written yet.
    private let promised = Mutex<[Int: Int64]>([:])
    private let nextTicket = Atomic<Int>(0)

    /// - Parameter measure: the store's total and free bytes now; throws when they cannot be had in time.
    public init(reserve: ReservedSpace, measure: @escaping @Sendable () async throws -> StoreCapacity) {
        self.reserve = reserve
        self.measure = measure
    }

    /// Bytes a new write may use now: free minus the reserve minus what others were promised.
    func available(excluding ticket: Int?) async throws -> (available: Int64, capacity: StoreCapacity, reserve: Int64) {
        let capacity = try await measure()
        let reserveBytes = reserve.bytes(ofTotal: capacity.totalBytes)
        let others = promised.withLock { $0.filter { $0.key != ticket }.values.reduce(0, +) }
        return (capacity.freeBytes - reserveBytes - others, capacity, reserveBytes)
    }

    /// Admits a write of `declared` bytes (nil: unknown, streamed). Throws `.storageFull` (413) when the
    /// declared size does not fit, or nothing at all is left above the reserve.
    public func admit(declared: Int64?) async throws -> SpaceTicket {
        let id = nextTicket.add(1, ordering: .relaxed).newValue
        // Promise first, then measure: of two uploads admitted at once, the second sees the first's claim.
        if let declared { promised.withLock { $0[id] = declared } }
        do {
            let (available, capacity, reserveBytes) = try await self.available(excluding: id)
            if let declared, declared > available {
                throw Self.full(needed: declared, available: available, capacity: capacity, reserve: reserveBytes)
            }
            if declared == nil, available <= 0 {
                throw Self.full(needed: nil, available: available, capacity: capacity, reserve: reserveBytes)
            }
            return SpaceTicket(gate: self, id: id, declared: declared, allowance: available)
        } catch {
            release(id)
            throw error
        }
    }

    func wrote(_ count: Int64, ticket id: Int) {
        promised.withLock { promised in
            if let left = promised[id] { promised[id] = max(0, left - count) }
        }
    }

    func release(_ id: Int) { _ = promised.withLock { $0.removeValue(forKey: id) } }

    static func full(needed: Int64?, available: Int64, capacity: StoreCapacity, reserve: Int64) -> ImageStoreError {
        let above = max(0, available)
        let what = needed.map { "the image needs \($0) bytes" } ?? "the upload reached the reserve"
        return ImageStoreError(
            .storageFull,
            "Image storage media is full: \(what), \(above) bytes are available above the reserve of \(reserve) bytes (filesystem_store_reserved_space; \(capacity.freeBytes) of \(capacity.totalBytes) bytes free)"
        )
    }
}

/// One admitted write. Driven by one upload task, strictly sequentially.
public final class SpaceTicket: @unchecked Sendable {
    private let gate: SpaceGate
    private let id: Int
    private let declared: Int64?
    /// Bytes this write may still use since the last measurement (unknown size only).
    private var allowance: Int64
    private var released = false

    init(gate: SpaceGate, id: Int, declared: Int64?, allowance: Int64) {
        self.gate = gate
        self.id = id
        self.declared = declared
        self.allowance = allowance
    }

    /// Call before writing `count` more bytes. A write of unknown size measures again when its allowance
    /// runs out (the bytes it wrote are then part of the measurement) and throws `.storageFull` (413)
    /// when the next bytes would go into the reserve.
    public func willWrite(_ count: Int) async throws {
        let count = Int64(count)
        guard declared == nil else {
            gate.wrote(count, ticket: id)
            return
        }
        if count > allowance {
            let (available, capacity, reserve) = try await gate.available(excluding: id)
            allowance = available
            if count > allowance {
                throw SpaceGate.full(needed: nil, available: available, capacity: capacity, reserve: reserve)
            }
        }
        allowance -= count
    }

    /// Ends the write's claim on free space (after it committed or failed). Idempotent.
    public func release() {
        guard !released else { return }
        released = true
        gate.release(id)
    }
}
