//! The same catalog behaviour, checked on both stores: SQLite (always) and PostgreSQL (when
//! `BOWMAN_TEST_PG_URL` names a server; scripts/test sets it, and `BOWMAN_TEST_REQUIRE_SERVICES=1`
//! turns its absence into a failure).

use std::collections::BTreeMap;
use std::sync::Arc;

use bowman_catalog::{
    Catalog, CatalogChange, CatalogError, CatalogStore, Checkpoint, ColumnDef, DatabaseDef, Grant, GrantObject, LiveDir, Mutation,
    PostgresStore, Replace, RoleDef, SqliteStore, TableDef, TableKind, Transaction, ViewDef,
};

fn view(database: &str, name: &str, query: &str) -> ViewDef {
    ViewDef {
        database: database.into(),
        name: name.into(),
        query: query.into(),
        query_database: "default".into(),
        columns: vec![ColumnDef { name: "a".into(), data_type: "INT".into(), nullable: true, comment: None }],
        comment: Some("a view".into()),
        created_at: 3,
        owner: Some("alice".into()),
    }
}

fn db(name: &str) -> DatabaseDef {
    DatabaseDef { name: name.into(), comment: None, location: None, created_at: 1, owner: None }
}

fn table(database: &str, name: &str) -> TableDef {
    TableDef {
        database: database.into(),
        name: name.into(),
        kind: TableKind::External,
        format: "parquet".into(),
        location: Some(format!("s3://b/{name}")),
        columns: vec![
            ColumnDef { name: "a".into(), data_type: "INT".into(), nullable: true, comment: Some("the a".into()) },
            ColumnDef { name: "dt".into(), data_type: "DATE".into(), nullable: false, comment: None },
        ],
        partition_columns: vec!["dt".into()],
        options: BTreeMap::from([("region".to_string(), "eu-west-1".to_string())]),
        secret_options: BTreeMap::from([("secret_access_key".to_string(), "hunter2".to_string())]),
        comment: Some("a table".into()),
        created_at: 2,
        tracked: false,
        live: vec![],
        retired: vec![],
        owner: Some("alice".into()),
        data_version: 0,
    }
}

async fn exercise(store: Arc<dyn CatalogStore>) {
    let catalog = Catalog::open(store.clone()).await.unwrap();
    let v0 = catalog.snapshot().version;
    assert!(catalog.snapshot().database("default").is_some());

    catalog.apply(CatalogChange::CreateDatabase { def: db("ev"), if_not_exists: false }).await.unwrap();
    assert!(matches!(
        catalog.apply(CatalogChange::CreateDatabase { def: db("ev"), if_not_exists: false }).await,
        Err(CatalogError::DatabaseExists(_))
    ));
    let noop = catalog.apply(CatalogChange::CreateDatabase { def: db("ev"), if_not_exists: true }).await.unwrap();
    assert!(!noop.applied);

    catalog.apply(CatalogChange::CreateTable { def: table("ev", "t"), if_not_exists: false }).await.unwrap();
    assert!(matches!(
        catalog.apply(CatalogChange::CreateTable { def: table("ev", "t"), if_not_exists: false }).await,
        Err(CatalogError::TableExists(..))
    ));
    assert!(matches!(
        catalog.apply(CatalogChange::CreateTable { def: table("nodb", "t"), if_not_exists: false }).await,
        Err(CatalogError::DatabaseNotFound(_))
    ));
    // Round trip of every field, secrets included.
    assert_eq!(catalog.snapshot().table("ev", "t"), Some(&table("ev", "t")));
    assert!(catalog.snapshot().version > v0);

    // A second catalog on the same store (another node) sees the same state.
    let other = Catalog::open(store.clone()).await.unwrap();
    assert_eq!(other.snapshot().table("ev", "t"), Some(&table("ev", "t")));
    other.apply(CatalogChange::CreateTable { def: table("ev", "u"), if_not_exists: false }).await.unwrap();
    let refreshed = catalog.refresh().await.unwrap();
    assert!(refreshed.table("ev", "u").is_some(), "refresh picks up another node's change");

    assert!(matches!(
        catalog.apply(CatalogChange::DropDatabase { name: "ev".into(), if_exists: false, cascade: false }).await,
        Err(CatalogError::DatabaseNotEmpty(_))
    ));
    assert!(matches!(
        catalog.apply(CatalogChange::DropDatabase { name: "default".into(), if_exists: false, cascade: true }).await,
        Err(CatalogError::ProtectedDatabase(_))
    ));
    let dropped = catalog.apply(CatalogChange::DropTable { database: "ev".into(), name: "u".into(), if_exists: false }).await.unwrap();
    assert_eq!(dropped.dropped_tables.len(), 1);
    assert!(matches!(
        catalog.apply(CatalogChange::DropTable { database: "ev".into(), name: "u".into(), if_exists: false }).await,
        Err(CatalogError::TableNotFound(..))
    ));
    // A tracked table: writes commit directories; an overwrite retires the ones it replaces.
    let mut tracked = table("ev", "tracked");
    tracked.tracked = true;
    catalog.apply(CatalogChange::CreateTable { def: tracked, if_not_exists: false }).await.unwrap();
    let dir = |p: &str, d: &str| LiveDir { partition: p.into(), dir: d.into() };
    let commit = |replace: Replace, add: Vec<LiveDir>| CatalogChange::CommitWrite {
        database: "ev".into(),
        name: "tracked".into(),
        replace,
        add,
        expect: None,
        retire_files: vec![],
    };
    catalog.apply(commit(Replace::Nothing, vec![dir("dt=1", "c1-a"), dir("dt=2", "c1-b")])).await.unwrap();
    catalog.apply(commit(Replace::Nothing, vec![dir("dt=2", "c2-b")])).await.unwrap();
    let out = catalog.apply(commit(Replace::Partitions(vec!["dt=2".into()]), vec![dir("dt=2", "c3-b")])).await.unwrap();
    assert_eq!(out.retired, vec![dir("dt=2", "c1-b"), dir("dt=2", "c2-b")]);
    assert_eq!(catalog.snapshot().table("ev", "tracked").unwrap().live, vec![dir("dt=1", "c1-a"), dir("dt=2", "c3-b")]);
    // A rewrite that read an older state of the partition it replaces must not win.
    let stale = CatalogChange::CommitWrite {
        database: "ev".into(),
        name: "tracked".into(),
        replace: Replace::Partitions(vec!["dt=2".into()]),
        add: vec![dir("dt=2", "c5-b")],
        expect: Some(vec![dir("dt=1", "c1-a"), dir("dt=2", "c1-b")]),
        retire_files: vec![],
    };
    assert!(matches!(catalog.apply(stale).await, Err(CatalogError::Conflict(_))));
    let fresh = CatalogChange::CommitWrite {
        database: "ev".into(),
        name: "tracked".into(),
        replace: Replace::Partitions(vec!["dt=2".into()]),
        add: vec![dir("dt=2", "c5-b")],
        expect: Some(vec![dir("dt=1", "c0-a"), dir("dt=2", "c3-b")]),
        retire_files: vec![],
    };
    catalog.apply(fresh).await.unwrap();
    let out = catalog.apply(commit(Replace::All, vec![])).await.unwrap();
    assert_eq!(out.retired.len(), 2);
    assert!(catalog.snapshot().table("ev", "tracked").unwrap().live.is_empty());
    // A managed table whose files Bowman does not track takes no commits.
    let mut untracked = table("ev", "untracked");
    untracked.kind = TableKind::Managed;
    catalog.apply(CatalogChange::CreateTable { def: untracked, if_not_exists: false }).await.unwrap();
    let to = |name: &str, replace: Replace, add: Vec<LiveDir>, retire_files: Vec<String>| CatalogChange::CommitWrite {
        database: "ev".into(),
        name: name.into(),
        replace,
        add,
        expect: None,
        retire_files,
    };
    assert!(matches!(catalog.apply(to("untracked", Replace::Nothing, vec![], vec![])).await, Err(CatalogError::Corrupt(_))));
    // An external table: live entries are files Bowman wrote; an overwrite retires them and the
    // files other engines wrote in the replaced partitions, until they are deleted.
    catalog.apply(to("t", Replace::Nothing, vec![dir("dt=1", "dt=1/a.bowman-c1.parquet")], vec![])).await.unwrap();
    let out = catalog
        .apply(to(
            "t",
            Replace::Partitions(vec!["dt=1".into()]),
            vec![dir("dt=1", "dt=1/b.bowman-c2.parquet")],
            vec!["dt=1/part-0.parquet".into()],
        ))
        .await
        .unwrap();
    let mut files = out.retired_files.clone();
    files.sort();
    assert_eq!(files, vec!["dt=1/a.bowman-c1.parquet".to_string(), "dt=1/part-0.parquet".to_string()]);
    let t = catalog.snapshot().table("ev", "t").unwrap().clone();
    assert_eq!(t.live, vec![dir("dt=1", "dt=1/b.bowman-c2.parquet")]);
    assert_eq!(t.retired.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), vec!["dt=1/a.bowman-c1.parquet", "dt=1/part-0.parquet"]);
    assert!(t.retired.iter().all(|r| r.retired_at > 0));
    // Renaming keeps both lists; forgetting removes only what is named.
    catalog
        .apply(CatalogChange::RenameTable { database: "ev".into(), name: "t".into(), new_database: "ev".into(), new_name: "t2".into() })
        .await
        .unwrap();
    assert_eq!(catalog.snapshot().table("ev", "t2").unwrap().retired.len(), 2);
    catalog
        .apply(CatalogChange::ForgetRetired { database: "ev".into(), name: "t2".into(), paths: vec!["dt=1/part-0.parquet".into()] })
        .await
        .unwrap();
    let t = catalog.snapshot().table("ev", "t2").unwrap().clone();
    assert_eq!(t.retired.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), vec!["dt=1/a.bowman-c1.parquet"]);
    assert_eq!(t.live.len(), 1);
    catalog
        .apply(CatalogChange::RenameTable { database: "ev".into(), name: "t2".into(), new_database: "ev".into(), new_name: "t".into() })
        .await
        .unwrap();
    catalog.apply(commit(Replace::Nothing, vec![dir("dt=9", "c4")])).await.unwrap();

    // Views: one namespace with tables, versioned like every change, renamed by ALTER TABLE.
    let before = catalog.snapshot().version;
    catalog.apply(CatalogChange::CreateView { def: view("ev", "v", "SELECT a FROM t"), or_replace: false, if_not_exists: false }).await.unwrap();
    assert!(catalog.snapshot().version > before);
    assert_eq!(other.refresh().await.unwrap().view("ev", "v"), Some(&view("ev", "v", "SELECT a FROM t")));
    let create_view = |name: &str, or_replace, if_not_exists| CatalogChange::CreateView {
        def: view("ev", name, "SELECT 2 AS a"),
        or_replace,
        if_not_exists,
    };
    assert!(matches!(catalog.apply(create_view("v", false, false)).await, Err(CatalogError::TableExists(..))));
    assert!(!catalog.apply(create_view("v", false, true)).await.unwrap().applied);
    catalog.apply(create_view("v", true, false)).await.unwrap();
    assert_eq!(catalog.snapshot().view("ev", "v").unwrap().query, "SELECT 2 AS a");
    assert!(matches!(catalog.apply(create_view("t", true, false)).await, Err(CatalogError::NotAView(..))));
    assert!(matches!(catalog.apply(create_view("t", false, false)).await, Err(CatalogError::TableExists(..))));
    assert!(matches!(
        catalog.apply(CatalogChange::CreateTable { def: table("ev", "v"), if_not_exists: false }).await,
        Err(CatalogError::TableExists(..))
    ));
    assert!(matches!(
        catalog.apply(CatalogChange::DropTable { database: "ev".into(), name: "v".into(), if_exists: true }).await,
        Err(CatalogError::NotATable(..))
    ));
    assert!(matches!(
        catalog.apply(CatalogChange::DropView { database: "ev".into(), name: "t".into(), if_exists: true }).await,
        Err(CatalogError::NotAView(..))
    ));
    catalog
        .apply(CatalogChange::RenameTable { database: "ev".into(), name: "v".into(), new_database: "public".into(), new_name: "w".into() })
        .await
        .unwrap();
    assert!(catalog.snapshot().view("ev", "v").is_none());
    assert_eq!(catalog.snapshot().view("default", "w").unwrap().database, "default", "public is stored as default");
    assert!(catalog.snapshot().view("public", "w").is_some());
    catalog.apply(CatalogChange::DropView { database: "public".into(), name: "w".into(), if_exists: false }).await.unwrap();
    assert!(matches!(
        catalog.apply(CatalogChange::DropView { database: "ev".into(), name: "w".into(), if_exists: false }).await,
        Err(CatalogError::TableNotFound(..))
    ));
    assert!(!catalog.apply(CatalogChange::DropView { database: "ev".into(), name: "w".into(), if_exists: true }).await.unwrap().applied);
    // `public` is the default database: it exists, and cannot be created or dropped apart.
    assert!(!catalog.apply(CatalogChange::CreateDatabase { def: db("public"), if_not_exists: true }).await.unwrap().applied);
    assert!(matches!(
        catalog.apply(CatalogChange::DropDatabase { name: "public".into(), if_exists: false, cascade: true }).await,
        Err(CatalogError::ProtectedDatabase(_))
    ));
    assert!(!catalog.snapshot().databases.contains_key("public"));
    catalog.apply(CatalogChange::CreateView { def: view("ev", "v2", "SELECT 1 AS a"), or_replace: false, if_not_exists: false }).await.unwrap();

    // Privileges: roles with attributes, owners, grants that follow renames and go with drops.
    let alice = RoleDef { name: "alice".into(), login: true, create_db: true, ..Default::default() };
    catalog.apply(CatalogChange::CreateRole { role: alice.clone(), password_hash: Some("SCRAM-SHA-256$x".into()), if_not_exists: false }).await.unwrap();
    catalog.apply(CatalogChange::CreateRole { role: RoleDef { name: "readers".into(), ..Default::default() }, password_hash: None, if_not_exists: false }).await.unwrap();
    assert!(matches!(
        catalog.apply(CatalogChange::CreateRole { role: alice.clone(), password_hash: None, if_not_exists: false }).await,
        Err(CatalogError::UserExists(_))
    ));
    let seen = other.refresh().await.unwrap();
    assert_eq!(seen.roles.get("alice"), Some(&alice));
    assert_eq!(seen.users.get("alice").map(String::as_str), Some("SCRAM-SHA-256$x"));
    assert!(!seen.users.contains_key("readers"), "a role without a password has none");
    assert_eq!(seen.table("ev", "t").unwrap().owner.as_deref(), Some("alice"));
    assert_eq!(seen.view("ev", "v2").unwrap().owner.as_deref(), Some("alice"));
    let grant = |object: GrantObject, grantee: &str, privilege: &str, option: bool| Grant {
        object,
        grantee: grantee.into(),
        privilege: privilege.into(),
        grantor: "admin".into(),
        grant_option: option,
    };
    let on_t = GrantObject::Table { database: "ev".into(), name: "t".into() };
    catalog
        .apply(CatalogChange::Grant {
            grants: vec![
                grant(on_t.clone(), "readers", "SELECT", false),
                grant(GrantObject::Role("readers".into()), "alice", "MEMBER", false),
                grant(GrantObject::Database("ev".into()), "alice", "CREATE", false),
            ],
        })
        .await
        .unwrap();
    // Granting again only adds the grant option.
    catalog.apply(CatalogChange::Grant { grants: vec![grant(on_t.clone(), "readers", "SELECT", true)] }).await.unwrap();
    let seen = other.refresh().await.unwrap();
    assert_eq!(seen.grants.len(), 3, "{:?}", seen.grants);
    assert!(seen.grants.contains(&grant(on_t.clone(), "readers", "SELECT", true)));
    assert!(matches!(
        catalog.apply(CatalogChange::Grant { grants: vec![grant(GrantObject::Table { database: "ev".into(), name: "nope".into() }, "alice", "SELECT", false)] }).await,
        Err(CatalogError::TableNotFound(..))
    ));
    catalog.apply(CatalogChange::Revoke { grants: vec![grant(on_t.clone(), "readers", "SELECT", false)], grant_option_only: true }).await.unwrap();
    assert!(catalog.snapshot().grants.contains(&grant(on_t.clone(), "readers", "SELECT", false)));
    // A rename keeps the grants; ALTER ROLE keeps the password unless given one.
    catalog
        .apply(CatalogChange::RenameTable { database: "ev".into(), name: "t".into(), new_database: "ev".into(), new_name: "t9".into() })
        .await
        .unwrap();
    let on_t9 = GrantObject::Table { database: "ev".into(), name: "t9".into() };
    assert!(catalog.snapshot().grants.iter().any(|g| g.object == on_t9));
    assert!(!catalog.snapshot().grants.iter().any(|g| g.object == on_t));
    catalog.apply(CatalogChange::AlterRole { role: RoleDef { login: false, ..alice.clone() }, password_hash: None }).await.unwrap();
    let seen = other.refresh().await.unwrap();
    assert!(!seen.roles["alice"].login);
    assert!(!seen.may_log_in("alice"));
    assert_eq!(seen.users.get("alice").map(String::as_str), Some("SCRAM-SHA-256$x"));
    // A role that owns objects stays; one that does not goes with its grants.
    assert!(matches!(catalog.apply(CatalogChange::DropUser { name: "alice".into(), if_exists: false }).await, Err(CatalogError::RoleInUse(..))));
    catalog.apply(CatalogChange::DropUser { name: "readers".into(), if_exists: false }).await.unwrap();
    assert_eq!(
        other.refresh().await.unwrap().grants,
        vec![grant(GrantObject::Database("ev".into()), "alice", "CREATE", false)]
    );
    catalog
        .apply(CatalogChange::RenameTable { database: "ev".into(), name: "t9".into(), new_database: "ev".into(), new_name: "t".into() })
        .await
        .unwrap();

    let cascade = catalog.apply(CatalogChange::DropDatabase { name: "ev".into(), if_exists: false, cascade: true }).await.unwrap();
    assert_eq!(cascade.dropped_tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["t", "tracked", "untracked"]);
    assert!(catalog.snapshot().database("ev").is_none());
    assert!(catalog.snapshot().grants.is_empty(), "a dropped database takes its grants along");
    let none = catalog.apply(CatalogChange::DropDatabase { name: "ev".into(), if_exists: true, cascade: false }).await.unwrap();
    assert!(!none.applied);
}

fn write(table: &str, replace: Replace, add: &[(&str, &str)]) -> Mutation {
    Mutation::CommitWrite {
        database: "vp".into(),
        name: table.into(),
        replace,
        add: add.iter().map(|(p, d)| LiveDir { partition: p.to_string(), dir: d.to_string() }).collect(),
        expect: None,
        retire_files: vec![],
    }
}

fn key(table: &str) -> (String, String) {
    ("vp".to_string(), table.to_string())
}

fn dirs(def: &TableDef) -> Vec<&str> {
    def.live.iter().map(|l| l.dir.as_str()).collect()
}

/// Versions per table, on one store seen by two catalogs (two nodes): DDL moves the schema
/// version; a data commit moves only its tables' data versions; the other node learns exactly
/// which tables changed and reloads only those, when they are opened; expectations on data
/// versions make a commit all-or-nothing against concurrent writers.
async fn versions_per_table(store: Arc<dyn CatalogStore>) {
    let a = Catalog::open(store.clone()).await.unwrap();
    let b = Catalog::open(store.clone()).await.unwrap();
    a.apply(CatalogChange::CreateDatabase { def: db("vp"), if_not_exists: false }).await.unwrap();
    for name in ["t1", "t2", "t3"] {
        let mut def = table("vp", name);
        def.tracked = true;
        def.kind = TableKind::Managed;
        a.apply(CatalogChange::CreateTable { def, if_not_exists: false }).await.unwrap();
    }
    b.refresh().await.unwrap();
    let schema = a.snapshot().schema_version;
    assert_eq!(b.snapshot().schema_version, schema);
    let since = store.version().await.unwrap();

    // One transaction writing two tables: one new version, a log naming exactly those two.
    let out = a
        .commit(Transaction::default().with(write("t1", Replace::Nothing, &[("dt=1", "c1")])).with(write("t3", Replace::Nothing, &[("dt=1", "c3")])))
        .await
        .unwrap();
    assert!(out.applied);
    assert_eq!(out.version, since + 1);
    assert_eq!(out.committed.iter().map(|c| (c.name.as_str(), c.data_version)).collect::<Vec<_>>(), vec![("t1", 1), ("t3", 1)]);
    let changes = store.changes_since(since).await.unwrap();
    assert!(!changes.schema, "{changes:?}");
    assert_eq!(changes.version, since + 1);
    assert_eq!(changes.tables.keys().cloned().collect::<Vec<_>>(), vec![key("t1"), key("t3")]);
    assert!(store.changes_since(since + 1).await.unwrap().tables.is_empty());
    let snap = a.snapshot();
    assert_eq!(snap.schema_version, schema, "a data commit is not DDL");
    let versions: Vec<i64> = ["t1", "t2", "t3"].iter().map(|t| snap.table("vp", t).unwrap().data_version).collect();
    assert_eq!(versions, vec![1, 0, 1]);

    // The other node: following the log reloads nothing; opening an untouched table reloads
    // nothing; opening a touched one reloads that table alone, with the commit in it.
    let before = b.tables_reloaded();
    b.sync().await.unwrap();
    assert_eq!(b.tables_reloaded(), before);
    assert_eq!(b.table("vp", "t2").await.unwrap().unwrap().data_version, 0);
    assert_eq!(b.tables_reloaded(), before, "t2 did not change");
    let t1 = b.table("vp", "t1").await.unwrap().unwrap();
    assert_eq!((t1.data_version, dirs(&t1)), (1, vec!["c1"]));
    assert_eq!(b.tables_reloaded(), before + 1, "exactly t1");
    assert_eq!(b.table("vp", "t1").await.unwrap().unwrap().data_version, 1);
    assert_eq!(b.tables_reloaded(), before + 1, "t1 is current now");
    assert_eq!(b.refresh().await.unwrap().table("vp", "t3").unwrap().data_version, 1);
    assert_eq!(b.tables_reloaded(), before + 2, "refresh reloads the stale t3 alone");

    // A stale expectation fails the whole transaction: neither table changes.
    let at = store.version().await.unwrap();
    let stale = Transaction::default()
        .with(write("t2", Replace::Nothing, &[("dt=1", "x2")]))
        .with(write("t1", Replace::Partitions(vec!["dt=1".into()]), &[("dt=1", "x1")]))
        .expecting("vp", "t1", 0);
    assert!(matches!(b.commit(stale).await, Err(CatalogError::Conflict(t)) if t == "vp.t1"));
    assert_eq!(store.version().await.unwrap(), at, "nothing was committed");
    let snap = a.refresh().await.unwrap();
    assert_eq!(dirs(snap.table("vp", "t1").unwrap()), vec!["c1"]);
    assert!(snap.table("vp", "t2").unwrap().live.is_empty());
    assert!(matches!(
        b.commit(Transaction::default().with(write("t1", Replace::Nothing, &[])).expecting("vp", "nope", 0)).await,
        Err(CatalogError::TableNotFound(..))
    ));

    // Two overwrites of one partition planned against the same data version, from two nodes:
    // the first commits, the second conflicts, and only the first one's directory is live.
    let planned = b.table("vp", "t1").await.unwrap().unwrap().data_version;
    let overwrite = |dir: &str| {
        Transaction::default().with(write("t1", Replace::Partitions(vec!["dt=1".into()]), &[("dt=1", dir)])).expecting("vp", "t1", planned)
    };
    let won = a.commit(overwrite("from-a")).await.unwrap();
    assert_eq!(won.retired, vec![LiveDir { partition: "dt=1".into(), dir: "c1".into() }]);
    assert!(matches!(b.commit(overwrite("from-b")).await, Err(CatalogError::Conflict(_))));
    b.sync().await.unwrap();
    assert_eq!(dirs(&b.table("vp", "t1").await.unwrap().unwrap()), vec!["from-a"]);
    // Appends carry no expectation: concurrent ones both commit.
    let (x, y) = tokio::join!(
        a.commit(Transaction::default().with(write("t2", Replace::Nothing, &[("dt=1", "ya")]))),
        b.commit(Transaction::default().with(write("t2", Replace::Nothing, &[("dt=1", "yb")])))
    );
    x.unwrap();
    y.unwrap();
    a.sync().await.unwrap();
    let t2 = a.table("vp", "t2").await.unwrap().unwrap();
    assert_eq!((dirs(&t2), t2.data_version), (vec!["ya", "yb"], 2));
    // The old form of a data commit is a one-mutation transaction, versioned the same way.
    let old_form = CatalogChange::CommitWrite {
        database: "vp".into(),
        name: "t3".into(),
        replace: Replace::All,
        add: vec![],
        expect: None,
        retire_files: vec![],
    };
    assert_eq!(a.apply(old_form).await.unwrap().committed[0].data_version, 2);
    assert_eq!(a.snapshot().schema_version, schema);

    // Source checkpoints commit with the data, or not at all.
    let checkpoint = |offset| Mutation::Checkpoint(Checkpoint { source: "clicks".into(), partition: "0".into(), offset });
    a.commit(Transaction::default().with(write("t2", Replace::Nothing, &[("dt=2", "k1")])).with(checkpoint(42))).await.unwrap();
    let failed = Transaction::default().with(write("t2", Replace::Nothing, &[("dt=2", "k2")])).with(checkpoint(50)).expecting("vp", "t2", 0);
    assert!(matches!(b.commit(failed).await, Err(CatalogError::Conflict(_))));
    let stored = a.checkpoints("clicks").await.unwrap();
    assert_eq!(stored, vec![Checkpoint { source: "clicks".into(), partition: "0".into(), offset: 42 }]);
    a.commit(Transaction::default().with(checkpoint(43))).await.unwrap();
    assert_eq!(b.checkpoints("clicks").await.unwrap()[0].offset, 43);
    assert!(b.checkpoints("other").await.unwrap().is_empty());

    // DDL moves the schema version and tells the other node to reload everything; a renamed
    // table keeps its data version.
    let since = store.version().await.unwrap();
    a.apply(CatalogChange::RenameTable { database: "vp".into(), name: "t1".into(), new_database: "vp".into(), new_name: "r1".into() })
        .await
        .unwrap();
    let changes = store.changes_since(since).await.unwrap();
    assert!(changes.schema);
    let snap = b.sync().await.unwrap();
    assert!(snap.schema_version > schema);
    assert_eq!(snap.table("vp", "r1").unwrap().data_version, 2);
    assert!(snap.table("vp", "t1").is_none());
    a.apply(CatalogChange::DropDatabase { name: "vp".into(), if_exists: false, cascade: true }).await.unwrap();
}

#[tokio::test]
async fn sqlite_versions_per_table() {
    let dir = tempfile::tempdir().unwrap();
    versions_per_table(Arc::new(SqliteStore::open(&dir.path().join("catalog.db")).unwrap())).await;
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    exercise(Arc::new(SqliteStore::open(&path).unwrap())).await;
    // Reopening runs no migration twice and keeps the contents.
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let catalog = Catalog::open(store).await.unwrap();
    assert!(catalog.snapshot().database("default").is_some());
}

#[tokio::test]
async fn sqlite_store_keeps_secrets_out_of_the_tables_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let catalog = Catalog::open(Arc::new(SqliteStore::open(&path).unwrap())).await.unwrap();
    catalog.apply(CatalogChange::CreateTable { def: table("default", "s"), if_not_exists: false }).await.unwrap();
    drop(catalog);
    let conn = rusqlite_check::open(&path);
    let options: String = rusqlite_check::query_one(&conn, "SELECT options FROM bowman_tables WHERE name = 's'");
    assert!(!options.contains("hunter2"), "{options}");
    let secrets: String = rusqlite_check::query_one(&conn, "SELECT options FROM bowman_table_secrets WHERE name = 's'");
    assert!(secrets.contains("hunter2"));
}

/// Reading the file directly, as an operator inspecting the catalog would.
mod rusqlite_check {
    pub fn open(path: &std::path::Path) -> rusqlite::Connection {
        rusqlite::Connection::open(path).unwrap()
    }

    pub fn query_one(conn: &rusqlite::Connection, sql: &str) -> String {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

#[tokio::test]
async fn sqlite_catalog_written_by_version_1_still_opens() {
    // A catalog file committed when the stored format was at version 1.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/catalog-v1.db");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    std::fs::copy(&fixture, &path).unwrap();
    let catalog = Catalog::open(Arc::new(SqliteStore::open(&path).unwrap())).await.unwrap();
    let t = catalog.snapshot().table("fixture", "events").cloned().expect("fixture table");
    assert_eq!(t.partition_columns, vec!["dt".to_string()]);
    assert_eq!(t.columns.iter().map(|c| c.data_type.as_str()).collect::<Vec<_>>(), vec!["BIGINT", "STRING", "DATE"]);
}

#[tokio::test]
async fn sqlite_catalog_written_by_version_1_follows_the_log_once_migrated() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/catalog-v1.db");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    std::fs::copy(&fixture, &path).unwrap();
    let store: Arc<dyn CatalogStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let (a, b) = (Catalog::open(store.clone()).await.unwrap(), Catalog::open(store.clone()).await.unwrap());
    let t = a.snapshot().table("fixture", "events").cloned().expect("fixture table");
    assert_eq!(t.data_version, 0);
    // The old version became the schema version; the log starts empty, so a node holding an
    // older version than the log reaches back to reloads everything.
    assert_eq!(a.snapshot().schema_version, a.snapshot().version);
    assert!(store.changes_since(0).await.unwrap().schema);
    let since = store.version().await.unwrap();
    a.apply(CatalogChange::CreateView { def: view("fixture", "v", "SELECT 1 AS a"), or_replace: false, if_not_exists: false }).await.unwrap();
    let changes = store.changes_since(since).await.unwrap();
    assert!(changes.schema && changes.tables.is_empty(), "{changes:?}");
    assert!(b.sync().await.unwrap().view("fixture", "v").is_some());
}

async fn postgres_url() -> Option<String> {
    match std::env::var("BOWMAN_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("BOWMAN_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "BOWMAN_TEST_PG_URL is not set but services are required: run scripts/test"
            );
            eprintln!("skipping: BOWMAN_TEST_PG_URL is not set");
            None
        }
    }
}

/// A fresh database on the test server, dropped afterwards.
async fn scratch_database(admin_url: &str, name: &str) -> (String, tokio_postgres::Client) {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let mut config: tokio_postgres::Config = admin_url.parse().unwrap();
    config.dbname(name);
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let url = format!(
        "postgres://{}@{}:{}/{}",
        config.get_user().unwrap_or("postgres"),
        host,
        config.get_ports().first().copied().unwrap_or(5432),
        name
    );
    (url, client)
}

#[tokio::test]
async fn postgres_store() {
    let Some(admin) = postgres_url().await else { return };
    let name = format!("bowman_catalog_test_{}", std::process::id());
    let (url, admin_client) = scratch_database(&admin, &name).await;
    {
        let store: Arc<dyn CatalogStore> = Arc::new(PostgresStore::connect(&url).await.unwrap());
        assert!(!store.describe().contains("password"));
        exercise(store.clone()).await;
        versions_per_table(store).await;
        // Two nodes migrating the same database at once.
        let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
        a.unwrap();
        b.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    admin_client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
}
