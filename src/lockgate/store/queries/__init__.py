"""The store's SQL, one module per area; each is a mixin over lockgate.store.transactions.Transactions."""
