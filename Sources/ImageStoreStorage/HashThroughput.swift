#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import ImageStoreCore
import NIOCore

/// What hashing alone costs, for `scripts/bench`: the digests an upload computes (md5 and the
/// `hashing_algorithm` digest, each on its own thread as in `UploadPipeline`, over the same 1 MiB
/// batches), fed from memory, so the upload's CPU can be compared with the floor the hashes set.
public enum HashThroughput {
    public struct Result: Sendable, Codable {
        public var algorithm: String
        public var bytes: Int64
        public var wallSeconds: Double
        /// User + system CPU of the whole process over the run (both hashing threads).
        public var cpuSeconds: Double
    }

    public static func measure(bytes total: Int64, algorithm: HashAlgorithm) -> Result {
        // A 64 MiB random pool cycled through: larger than the caches, like an upload's stream.
        var pool = ByteBufferAllocator().buffer(capacity: 64 << 20)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<((64 << 20) / 8) { pool.writeInteger(generator.next() as UInt64) }
        let batch = FilesystemImageWriter.batchSize
        let batches = (0..<(pool.readableBytes / batch)).map { pool.getSlice(at: $0 * batch, length: batch)! }
        let count = Int((total + Int64(batch) - 1) / Int64(batch))

        let cpuBefore = processCPUSeconds()
        let start = ContinuousClock.now
        let done = DispatchSemaphore(value: 0)
        let results = DigestResults()
        Thread.detachNewThread {
            var md5 = Digest.md5()
            for i in 0..<count { md5.update(batches[i % batches.count]) }
            results.set(md5: md5.hex())
            done.signal()
        }
        Thread.detachNewThread {
            var digest = MultihashDigest(algorithm)
            for i in 0..<count { digest.update(batches[i % batches.count]) }
            results.set(multihash: digest.hex())
            done.signal()
        }
        done.wait()
        done.wait()
        let wall = ContinuousClock.now - start
        return Result(
            algorithm: "md5+\(algorithm.rawValue)", bytes: Int64(count) * Int64(batch), wallSeconds: wall.fractionalMilliseconds / 1000,
            cpuSeconds: processCPUSeconds() - cpuBefore)
    }

    /// The digests, kept so the work cannot be optimised away.
    private final class DigestResults: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [String] = []
        func set(md5: String) { lock.withLock { values.append(md5) } }
        func set(multihash: String) { lock.withLock { values.append(multihash) } }
    }

    private static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
