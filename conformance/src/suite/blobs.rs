//! Cases for the blob read path: a blob as a stream and into a sink, whole
//! or a range, checked as it flows.

use futures::StreamExt;
use registry_client::{BlobSink, Error, ErrorKind, GetBlobOptions, RepositoryClient, RestartRefused};

use super::env::SuiteEnv;
use crate::harness::fault_proxy::{Fault, FaultKind, Matcher};

/// Every item of a blob stream: its bytes, and the error that ended it, if any.
async fn drain(mut stream: registry_client::BlobStream) -> (Vec<u8>, Option<Error>) {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(error) => return (bytes, Some(error)),
        }
    }
    (bytes, None)
}

/// A blob as a stream, whole and as a range: the bytes the registry holds, its size
/// known at the first bytes; a range past a known size is refused before any request.
pub async fn blob_stream_and_range(client: &RepositoryClient, env: &SuiteEnv) {
    let fixture = &env.fixtures().single_oci;
    let reference = env.image(fixture);
    let layer = &fixture.layers[0];
    let size = layer.data.len() as u64;

    let stream = client
        .get_blob(&reference, &layer.digest, GetBlobOptions::default())
        .await
        .expect("stream");
    assert_eq!(stream.size(), Some(size));
    let (bytes, error) = drain(stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(bytes, layer.data);

    let range = 3..size - 2;
    let options = GetBlobOptions::default().size(size).range(range.clone());
    let stream = client
        .get_blob(&reference, &layer.digest, options)
        .await
        .expect("ranged stream");
    assert_eq!(stream.size(), Some(range.end - range.start));
    let (bytes, error) = drain(stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(bytes, &layer.data[range.start as usize..range.end as usize]);

    // A source that ignores `Range` and sends the whole blob: the bytes before and
    // after the range are dropped, and the range arrives all the same.
    client.ping(&env.target.registry_name).await.expect("ping");
    env.proxy
        .inject_when(Matcher::blob_gets(), Fault::IgnoreRange { times: 1 });
    let options = GetBlobOptions::default().size(size).range(range.clone());
    let stream = client
        .get_blob(&reference, &layer.digest, options)
        .await
        .expect("ranged stream, range ignored");
    let (bytes, error) = drain(stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(bytes, &layer.data[range.start as usize..range.end as usize]);
    assert_eq!(env.proxy.fired(FaultKind::IgnoreRange), 1);
    env.proxy.clear();

    let past_the_end = GetBlobOptions::default().size(size).range(1..size + 1);
    let err = client
        .get_blob(&reference, &layer.digest, past_the_end)
        .await
        .err()
        .expect("a range past the blob");
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
}

/// Keeps what it is given, and refuses to start again (it "passed the bytes on").
#[derive(Default)]
struct OneWaySink {
    bytes: Vec<u8>,
}

impl BlobSink for OneWaySink {
    async fn write(&mut self, chunk: bytes::Bytes) -> registry_client::Result<()> {
        self.bytes.extend_from_slice(&chunk);
        Ok(())
    }

    async fn restart(&mut self) -> Result<(), RestartRefused> {
        Err(RestartRefused::new("already sent on"))
    }
}

/// A corrupted blob never reaches its end: the stream ends with the digest error
/// instead of its last bytes, and a sink that cannot start again gets a typed
/// refusal ([`Error::CannotRefetch`]) whose kind is still the digest's.
pub async fn blob_corruption_never_completes(client: &RepositoryClient, env: &SuiteEnv) {
    let fixture = &env.fixtures().single_oci;
    let reference = env.image(fixture);
    let layer = &fixture.layers[0];
    // Authenticated first, so that the fault meets the blob, not a challenge.
    client.ping(&env.target.registry_name).await.expect("ping");

    env.proxy
        .inject_when(Matcher::blob_gets(), Fault::CorruptByte { offset: 5, times: 1 });
    let result = client
        .get_blob(&reference, &layer.digest, GetBlobOptions::default())
        .await;
    let error = match result {
        Ok(stream) => {
            let (bytes, error) = drain(stream).await;
            assert!(
                bytes.len() < layer.data.len(),
                "the whole corrupt blob was passed on: {error:?}"
            );
            error.expect("the stream ends with an error")
        }
        Err(error) => error,
    };
    assert_eq!(error.kind(), ErrorKind::DigestMismatch, "{error:?}");

    env.proxy
        .inject_when(Matcher::blob_gets(), Fault::CorruptByte { offset: 5, times: 1 });
    let mut sink = OneWaySink::default();
    let err = client
        .get_blob_into(&reference, &layer.digest, &GetBlobOptions::default(), &mut sink)
        .await
        .expect_err("corrupted");
    match &err {
        Error::CannotRefetch { reason, .. } => assert_eq!(reason, "already sent on"),
        other => panic!("expected CannotRefetch, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::DigestMismatch);
    env.proxy.clear();

    // The same sink, uncorrupted: the blob arrives whole.
    let mut sink = OneWaySink::default();
    let fetched = client
        .get_blob_into(&reference, &layer.digest, &GetBlobOptions::default(), &mut sink)
        .await
        .expect("clean");
    assert_eq!(fetched.size, layer.data.len() as u64);
    assert_eq!(sink.bytes, layer.data);
}
