//! registry-client's integration tests, one binary (the SDK's other tests are unit tests beside
//! their code, and the real-registry tests live in the conformance crate).

mod pagination;
