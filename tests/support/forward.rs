//! `forward_store!`: the `RunStore` methods a test's wrapper store passes through to the
//! store it wraps, so each wrapper writes only what it changes (`append`, `commit`).

/// Implements every `RunStore` method but `append` and `commit` by calling the same method
/// on `self.$inner`.
#[macro_export]
macro_rules! forward_store {
    ($inner:tt) => {
        fn load(
            &self,
            run: &tradeflow::run::RunId,
        ) -> Result<Vec<tradeflow::store::JournalEntry>, tradeflow::store::StoreError> {
            self.$inner.load(run)
        }

        fn unfinished_runs(
            &self,
        ) -> Result<Vec<tradeflow::run::RunId>, tradeflow::store::StoreError> {
            self.$inner.unfinished_runs()
        }

        fn rewarded_runs(
            &self,
        ) -> Result<Vec<tradeflow::run::RunId>, tradeflow::store::StoreError> {
            self.$inner.rewarded_runs()
        }

        fn started_runs(&self) -> Result<Vec<tradeflow::run::RunId>, tradeflow::store::StoreError> {
            self.$inner.started_runs()
        }

        fn put_definition(
            &self,
            id: &str,
            version: &str,
            json: &str,
        ) -> Result<(), tradeflow::store::StoreError> {
            self.$inner.put_definition(id, version, json)
        }

        fn definition(
            &self,
            id: &str,
            version: &str,
        ) -> Result<Option<String>, tradeflow::store::StoreError> {
            self.$inner.definition(id, version)
        }

        fn claim(
            &self,
            run: &tradeflow::run::RunId,
            owner: &str,
            now: chrono::DateTime<chrono::Utc>,
            until: chrono::DateTime<chrono::Utc>,
        ) -> Result<tradeflow::store::Lease, tradeflow::store::StoreError> {
            self.$inner.claim(run, owner, now, until)
        }

        fn renew(
            &self,
            leases: &[&tradeflow::store::Lease],
            until: chrono::DateTime<chrono::Utc>,
        ) -> Vec<Result<(), tradeflow::store::StoreError>> {
            self.$inner.renew(leases, until)
        }

        fn release(
            &self,
            lease: &tradeflow::store::Lease,
        ) -> Result<(), tradeflow::store::StoreError> {
            self.$inner.release(lease)
        }
    };
}
