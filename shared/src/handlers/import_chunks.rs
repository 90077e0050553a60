//! `send-email`'s part of bulk imports: an outbox record of a chunk (`kind` = `import_chunk`)
//! imports that chunk's rows (see [`crate::usecases::import`]).

use aws_lambda_events::event::dynamodb::EventRecord;
use serde::Deserialize;

use crate::app::Portal;
use crate::domain::import::CHUNK_KIND;
use crate::usecases::import::{self, ChunkOutcome};

use super::send_email::Outcome;

#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    pk: Option<String>,
}

/// The chunk a new outbox record is, if it is one.
pub fn chunk_id(record: &EventRecord) -> Option<String> {
    let probe: Kind = serde_dynamo::from_item(record.change.new_image.clone()).ok()?;
    if probe.kind.as_deref() != Some(CHUNK_KIND) {
        return None;
    }
    probe.pk
}

/// Processes the chunk; Err: not done (logged), the stream retries the record.
pub(super) async fn process(portal: &Portal, chunk_id: &str) -> Result<Outcome, ()> {
    match import::process_chunk(portal, chunk_id).await {
        Ok(ChunkOutcome::Processed(counts)) => {
            tracing::info!(
                chunk_id,
                rows = counts.rows,
                contacts_created = counts.contacts_created,
                invitations_created = counts.invitations_created,
                "import chunk processed"
            );
            Ok(Outcome::Skipped)
        }
        Ok(ChunkOutcome::Skipped) => Ok(Outcome::Skipped),
        Err(err) => {
            tracing::error!(chunk_id, error = format!("{err:#}"), "import chunk not done; the stream will retry");
            Err(())
        }
    }
}
