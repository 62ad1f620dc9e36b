//! The table: checked (and made, if absent) before a name's first request, made again
//! if it is deleted, and one acquire's turn per name in this process (the gate).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ::aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use ::aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use ::aws_sdk_dynamodb::Client;

use super::item::K_NAME;
use super::{DynamoDbStore, TABLE_WAIT};
use crate::LockError;

impl DynamoDbStore {
    /// The client, once the table is known to exist with the right key (made if absent).
    pub(super) async fn ready(&self, name: &str) -> Result<&Client, LockError> {
        let client = self.client().await;
        if !self.inner.ready.load(Ordering::Acquire) {
            // Several tasks may check at once: creation races are handled.
            self.ensure_table(client, name).await?;
            self.inner.ready.store(true, Ordering::Release);
        }
        Ok(client)
    }

    /// Waits until no other acquire of this process asks for `name`, and holds the others
    /// off until the returned guard drops. An acquire is a read and a conditional write:
    /// requests of one process racing for one name (many shared holders, or the clean-up
    /// of a storm of cancelled waits) would mostly invalidate each other's writes and
    /// retry; one at a time, each takes two requests.
    pub(super) async fn gate(&self, name: &str) -> Gate<'_> {
        let gate = {
            let mut gates = crate::sync::lock_std(&self.inner.gates);
            gates.entry(name.to_owned()).or_default().clone()
        };
        let held = gate.clone().lock_owned().await;
        Gate {
            store: self,
            name: name.to_owned(),
            held: Some(held),
        }
    }

    /// Whether `e` says the table does not exist (deleted, or a server that lost its
    /// data); the next request makes it again.
    pub(super) fn table_gone<E: ProvideErrorMetadata, R>(&self, e: &SdkError<E, R>) -> bool {
        let gone = e
            .as_service_error()
            .is_some_and(|s| s.code() == Some("ResourceNotFoundException"));
        if gone {
            self.inner.ready.store(false, Ordering::Release);
        }
        gone
    }

    /// Makes the table if it does not exist; checks its key if it does; waits until it
    /// is active.
    pub(super) async fn ensure_table(&self, client: &Client, name: &str) -> Result<(), LockError> {
        let table = &self.inner.table;
        let deadline = tokio::time::Instant::now() + TABLE_WAIT;
        let mut created = false;
        loop {
            match client.describe_table().table_name(table).send().await {
                Ok(out) => {
                    let Some(t) = out.table() else {
                        return Err(self.message(name, "describe table: no description"));
                    };
                    self.check_shape(t, name)?;
                    if t.table_status() == Some(&TableStatus::Active) {
                        return Ok(());
                    }
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception())
                        && !created =>
                {
                    let made = client
                        .create_table()
                        .table_name(table)
                        .key_schema(
                            KeySchemaElement::builder()
                                .attribute_name(K_NAME)
                                .key_type(KeyType::Hash)
                                .build()
                                .map_err(|e| self.message(name, &format!("create table: {e}")))?,
                        )
                        .attribute_definitions(
                            AttributeDefinition::builder()
                                .attribute_name(K_NAME)
                                .attribute_type(ScalarAttributeType::S)
                                .build()
                                .map_err(|e| self.message(name, &format!("create table: {e}")))?,
                        )
                        .billing_mode(BillingMode::PayPerRequest)
                        .send()
                        .await;
                    match made {
                        Ok(_) => {}
                        // Someone else made it meanwhile: check it like any other.
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                        Err(e) => return Err(self.error(name, "create table", &e)),
                    }
                    created = true;
                    continue;
                }
                Err(e) => return Err(self.error(name, "describe table", &e)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.message(
                    name,
                    &format!("table `{table}` did not become active within {TABLE_WAIT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) fn check_shape(
        &self,
        t: &::aws_sdk_dynamodb::types::TableDescription,
        name: &str,
    ) -> Result<(), LockError> {
        let keys = t.key_schema();
        let key_ok = keys.len() == 1
            && keys[0].attribute_name() == K_NAME
            && keys[0].key_type() == &KeyType::Hash;
        let type_ok = t
            .attribute_definitions()
            .iter()
            .any(|a| a.attribute_name() == K_NAME && a.attribute_type() == &ScalarAttributeType::S);
        if key_ok && type_ok {
            return Ok(());
        }
        let shape: Vec<String> = keys
            .iter()
            .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str()))
            .collect();
        Err(self.message(
            name,
            &format!(
                "table `{}` exists with another key schema [{}]: lock-core needs a table whose \
                 only key is the partition key `name` of type string; choose another table",
                self.inner.table,
                shape.join(", ")
            ),
        ))
    }
}

/// An acquire's turn at a name in this process; forgets the name's gate when nobody else
/// waits for it.
pub(super) struct Gate<'s> {
    store: &'s DynamoDbStore,
    name: String,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut gates = crate::sync::lock_std(&self.store.inner.gates);
        // Only the map holds it: nobody waits, and nobody can start waiting meanwhile
        // (that needs the map's lock).
        if gates
            .get(&self.name)
            .is_some_and(|g| Arc::strong_count(g) == 1)
        {
            gates.remove(&self.name);
        }
    }
}
