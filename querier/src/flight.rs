//! Arrow Flight SQL on the gRPC port, for ADBC and JDBC Flight SQL drivers, DBeaver and
//! Grafana's Flight SQL datasource.
//!
//! Read-only, like `POST /api/v1/sql`: statements and prepared statements are planned and run
//! by [`Querier`] (same read-only check, timeout and memory limit), for the tenant the call's
//! `authorization` / `x-scope-orgid` metadata names. Nothing is kept between calls: a ticket
//! and a prepared statement handle are the SQL text itself, and each call resolves its tenant
//! again, so a handle is only ever run for the caller presenting it. Catalog metadata lists
//! what the tenant's session registers. Parameters, updates, ingestion, transactions and
//! Substrait are refused.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionCreatePreparedSubstraitPlanRequest,
    ActionEndSavepointRequest, ActionEndTransactionRequest, Any, CommandGetCatalogs,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementSubstraitPlan,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;
use futures::{Stream, TryStreamExt};
use prost::Message;
use stackdrift_model::tenant::TENANT_HEADER;
use tonic::{Request, Response, Status, Streaming};

use crate::error::QueryError;
use crate::query::Querier;

/// What `do_get` answers with.
type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;
/// What `do_handshake` answers with.
type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

/// The Flight SQL service.
#[derive(Clone)]
pub struct FlightSql {
    querier: Arc<Querier>,
    sql_info: Arc<SqlInfoData>,
    type_info: Arc<XdbcTypeInfoData>,
}

impl fmt::Debug for FlightSql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlightSql")
            .field("querier", &self.querier)
            .finish_non_exhaustive()
    }
}

impl FlightSql {
    /// The service for `querier`.
    pub fn new(querier: Arc<Querier>) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "stackdrift");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::FlightSqlServerBulkIngestion, false);
        info.append(SqlInfo::SqlDdlCatalog, false);
        info.append(SqlInfo::SqlDdlSchema, false);
        info.append(SqlInfo::SqlDdlTable, false);
        // DataFusion folds unquoted identifiers to lower case and keeps quoted ones.
        info.append(
            SqlInfo::SqlIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
        );
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        info.append(SqlInfo::SqlAllTablesAreSelectable, true);
        Self {
            querier,
            sql_info: Arc::new(info.build().expect("constant SqlInfo values encode")),
            // No type catalog is published: the result schemas carry the Arrow types.
            type_info: Arc::new(
                XdbcTypeInfoDataBuilder::new()
                    .build()
                    .expect("an empty type list encodes"),
            ),
        }
    }

    /// The tonic server for `querier`.
    pub fn server(querier: Arc<Querier>) -> FlightServiceServer<Self> {
        FlightServiceServer::new(Self::new(querier))
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(256 << 20)
    }

    /// The tenant the call acts for, from its `authorization` and `x-scope-orgid` metadata.
    fn tenant<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let md = request.metadata();
        Ok(self.querier.tenant(
            md.get("authorization").map(|v| v.as_bytes()),
            md.get(TENANT_HEADER).map(|v| v.as_bytes()),
        )?)
    }

    /// A fresh session of `tenant`, for catalog metadata.
    async fn session(&self, tenant: &str) -> Result<SessionContext, Status> {
        Ok(self.querier.limited(self.querier.session(tenant)).await?)
    }

    /// Plans `sql` and describes its result, to be fetched with `ticket`.
    async fn query_info(
        &self,
        tenant: &str,
        sql: &str,
        ticket: Any,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.querier.plan_schema(tenant, sql).await?;
        flight_info(&wire_schema(schema), ticket, descriptor)
    }

    /// Runs the SQL a ticket or handle carries.
    async fn run(&self, tenant: &str, handle: &[u8]) -> Result<Response<DoGetStream>, Status> {
        let out = self.querier.query(tenant, handle_sql(handle)?).await?;
        Ok(batches(out.schema, out.batches))
    }

    /// Every table of the session: (catalog, schema, table, table type, Arrow schema).
    async fn tables(&self, tenant: &str) -> Result<Vec<TableRow>, Status> {
        let ctx = self.session(tenant).await?;
        let mut rows = Vec::new();
        for (catalog, schema) in schemas(&ctx) {
            let Some(provider) = ctx.catalog(&catalog).and_then(|c| c.schema(&schema)) else {
                continue;
            };
            let mut names = provider.table_names();
            names.sort();
            for name in names {
                let table = provider.table(&name).await.map_err(|e| {
                    QueryError::from_datafusion(e, self.querier.config().memory_limit)
                })?;
                if let Some(table) = table {
                    rows.push(TableRow {
                        kind: table_type_name(table.table_type()),
                        arrow: wire_schema(table.schema()),
                        catalog: catalog.clone(),
                        schema: schema.clone(),
                        name,
                    });
                }
            }
        }
        Ok(rows)
    }
}

/// One row of `GetTables`.
struct TableRow {
    catalog: String,
    schema: String,
    name: String,
    kind: &'static str,
    arrow: SchemaRef,
}

/// (catalog, schema) pairs of a session, sorted.
fn schemas(ctx: &SessionContext) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for catalog in ctx.catalog_names() {
        if let Some(c) = ctx.catalog(&catalog) {
            for schema in c.schema_names() {
                out.push((catalog.clone(), schema));
            }
        }
    }
    out.sort();
    out
}

/// The Flight SQL (JDBC) name of a DataFusion table type.
fn table_type_name(t: TableType) -> &'static str {
    match t {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

/// The SQL text of a statement ticket or prepared statement handle.
fn handle_sql(handle: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(handle).map_err(|_| {
        Status::invalid_argument("the statement handle is not stackdrift's (not UTF-8 SQL)")
    })
}

/// `schema` as the encoder sends it (dictionary columns as their value type), so that a
/// FlightInfo announces exactly the schema `do_get` streams.
fn wire_schema(schema: SchemaRef) -> SchemaRef {
    FlightDataEncoderBuilder::new()
        .with_schema(schema.clone())
        .build(futures::stream::empty())
        .known_schema()
        .unwrap_or(schema)
}

/// A FlightInfo with one endpoint (no location: fetch from this server) whose ticket is
/// `ticket`, packed as the protocol wants.
fn flight_info(
    schema: &Schema,
    ticket: Any,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(arrow_status)?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// A `do_get` stream of `batches`.
fn batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Response::new(Box::pin(data))
}

/// A metadata result of one batch.
fn one_batch<E: fmt::Display>(
    batch: Result<RecordBatch, E>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(arrow_status)?;
    Ok(batches(batch.schema(), vec![batch]))
}

/// `schema` as an IPC-encapsulated Schema message.
fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(arrow_status)?;
    Ok(bytes)
}

fn arrow_status(e: impl fmt::Display) -> Status {
    Status::internal(format!("encoding the Flight SQL response: {e}"))
}

/// Refusal of anything that would write.
fn read_only(what: &str) -> Status {
    QueryError::ReadOnly(format!("{what} is not supported over Flight SQL")).into()
}

/// Refusal of a Flight SQL feature stackdrift does not have.
fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported by stackdrift's Flight SQL server (read-only SQL queries, \
         prepared statements without parameters, and catalog metadata are)"
    ))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        // No session to set up: every call carries its credentials. They are checked here so
        // that a client that authenticates by handshake learns early that they are wrong, and
        // echoed back for clients that reuse what the handshake answers as their token.
        self.tenant(&request)?;
        let authorization = request.metadata().get("authorization").cloned();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response: Response<HandshakeStream> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if let Some(value) = authorization {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    // Statements: the ticket carries the SQL, planned now and run by `do_get`.

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.tenant(&request)?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into_bytes().into(),
        };
        self.query_info(&tenant, &query.query, ticket.as_any(), request.into_inner())
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        self.run(&tenant, &ticket.statement_handle).await
    }

    // Prepared statements: the handle is the SQL; nothing is held on the server.

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let tenant = self.tenant(&request)?;
        let schema = self.querier.plan_schema(&tenant, &query.query).await?;
        Ok(ActionCreatePreparedStatementResult {
            dataset_schema: ipc_schema(&wire_schema(schema))?,
            parameter_schema: ipc_schema(&Schema::empty())?,
            prepared_statement_handle: query.query.into_bytes().into(),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.tenant(&request)?;
        let sql = handle_sql(&cmd.prepared_statement_handle)?.to_owned();
        self.query_info(&tenant, &sql, cmd.as_any(), request.into_inner())
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        self.run(&tenant, &cmd.prepared_statement_handle).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.tenant(&request)?;
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        _query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.tenant(&request)?;
        Err(unsupported(
            "binding parameters to a prepared statement (put the values in the SQL)",
        ))
    }

    // Catalog metadata: one batch, built from the tenant's session.

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        let ctx = self.session(&tenant).await?;
        let mut builder = query.into_builder();
        let mut names = ctx.catalog_names();
        names.sort();
        for name in names {
            builder.append(name);
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        let ctx = self.session(&tenant).await?;
        // The builder applies the request's catalog and schema pattern filters.
        let mut builder = query.into_builder();
        for (catalog, schema) in schemas(&ctx) {
            builder.append(catalog, schema);
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        // The builder applies the request's filters (catalog, schema and table name patterns,
        // table types) and adds each table's IPC schema when `include_schema` asks for it.
        let mut builder = query.into_builder();
        for t in self.tables(&tenant).await? {
            builder
                .append(&t.catalog, &t.schema, &t.name, t.kind, &t.arrow)
                .map_err(arrow_status)?;
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.tenant(&request)?;
        let mut builder = query.into_builder();
        for t in [TableType::Base, TableType::View, TableType::Temporary] {
            builder.append(table_type_name(t));
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.tenant(&request)?;
        one_batch(query.into_builder(&self.sql_info).build())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.into_builder(&self.type_info).schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.tenant(&request)?;
        one_batch(query.into_builder(&self.type_info).build())
    }

    // Keys: stackdrift's tables declare none.

    async fn get_flight_info_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        Err(unsupported("GetPrimaryKeys (the tables declare no keys)"))
    }

    async fn get_flight_info_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        Err(unsupported("GetExportedKeys (the tables declare no keys)"))
    }

    async fn get_flight_info_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        Err(unsupported("GetImportedKeys (the tables declare no keys)"))
    }

    async fn get_flight_info_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        Err(unsupported(
            "GetCrossReference (the tables declare no keys)",
        ))
    }

    // Writes, Substrait and transactions: refused.

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        Err(unsupported("Substrait plans (send SQL)"))
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.tenant(&request)?;
        Err(read_only("executing an update"))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.tenant(&request)?;
        Err(read_only("bulk ingestion (push profiles instead)"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.tenant(&request)?;
        Err(read_only("executing a prepared update"))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.tenant(&request)?;
        Err(unsupported("Substrait plans (send SQL)"))
    }

    async fn do_action_create_prepared_substrait_plan(
        &self,
        _query: ActionCreatePreparedSubstraitPlanRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.tenant(&request)?;
        Err(unsupported("Substrait plans (send SQL)"))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        self.tenant(&request)?;
        Err(unsupported("transactions (the data is read-only)"))
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.tenant(&request)?;
        Err(unsupported("transactions (the data is read-only)"))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        self.tenant(&request)?;
        Err(unsupported("savepoints (the data is read-only)"))
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.tenant(&request)?;
        Err(unsupported("savepoints (the data is read-only)"))
    }

    async fn do_action_cancel_query(
        &self,
        _query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        self.tenant(&request)?;
        Err(unsupported(
            "cancelling a query (each query ends by itself within the query timeout)",
        ))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
