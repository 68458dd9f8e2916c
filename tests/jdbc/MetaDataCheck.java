// What DBeaver, Metabase and Tableau ask Bowman through the PostgreSQL JDBC driver on connect
// and sync: DatabaseMetaData's schemas, tables, columns, primary keys, indexes and types, then
// a parameterised query.
// Run by tests/tests/server.rs with `java -cp <driver.jar> MetaDataCheck.java <jdbc url>`; any
// failure exits non-zero with the reason.
import java.sql.*;
import java.util.*;

public class MetaDataCheck {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], "bowman", "")) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE DATABASE IF NOT EXISTS jdbc_lake");
                s.execute("CREATE TABLE IF NOT EXISTS jdbc_lake.orders (id BIGINT, customer STRING, total DECIMAL(12,2), placed TIMESTAMP, dt DATE) PARTITIONED BY (dt)");
                s.execute("INSERT INTO jdbc_lake.orders VALUES (1, 'acme', 10.50, TIMESTAMP '2018-03-05 10:00:00', DATE '2018-03-05')");
            }
            DatabaseMetaData md = c.getMetaData();
            System.out.println("product " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());

            Set<String> schemas = new HashSet<>();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
            }
            // The default database is PostgreSQL's schema public, listed once.
            check(schemas.contains("jdbc_lake") && schemas.contains("public") && !schemas.contains("default"), "getSchemas: " + schemas);

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "jdbc_lake", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
            }
            check(tables.equals(List.of("jdbc_lake.orders:TABLE")), "getTables: " + tables);

            try (Statement s = c.createStatement()) {
                s.execute("CREATE OR REPLACE VIEW jdbc_lake.big_orders AS SELECT id, total FROM jdbc_lake.orders WHERE total > 5");
            }
            List<String> views = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "jdbc_lake", "%", new String[] {"VIEW"})) {
                while (rs.next()) views.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
            }
            check(views.equals(List.of("jdbc_lake.big_orders:VIEW")), "getTables(VIEW): " + views);

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "jdbc_lake", "orders", "%")) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getInt("DATA_TYPE") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getInt("ORDINAL_POSITION"));
                }
            }
            List<String> expected = List.of(
                "id:" + Types.BIGINT + ":int8:1",
                "customer:" + Types.VARCHAR + ":text:2",
                "total:" + Types.NUMERIC + ":numeric:3",
                "placed:" + Types.TIMESTAMP + ":timestamp:4",
                "dt:" + Types.DATE + ":date:5");
            check(columns.equals(expected), "getColumns: " + columns);

            // Bowman tables declare no primary keys or indexes: both answer no rows, with the
            // columns JDBC defines (pgjdbc asks with information_schema._pg_expandarray).
            try (ResultSet rs = md.getPrimaryKeys(null, "jdbc_lake", "orders")) {
                ResultSetMetaData rm = rs.getMetaData();
                List<String> names = new ArrayList<>();
                for (int i = 1; i <= rm.getColumnCount(); i++) names.add(rm.getColumnName(i).toLowerCase());
                check(names.equals(List.of("table_cat", "table_schem", "table_name", "column_name", "key_seq", "pk_name")), "getPrimaryKeys columns: " + names);
                check(!rs.next(), "getPrimaryKeys: no primary key");
            }
            try (ResultSet rs = md.getIndexInfo(null, "jdbc_lake", "orders", false, true)) {
                check(rs.getMetaData().getColumnCount() >= 13, "getIndexInfo columns");
                check(!rs.next(), "getIndexInfo: no index");
            }

            int types = 0;
            try (ResultSet rs = md.getTypeInfo()) {
                while (rs.next()) types++;
            }
            check(types > 10, "getTypeInfo returned " + types + " types");

            try (PreparedStatement ps = c.prepareStatement("SELECT customer, total FROM jdbc_lake.orders WHERE id = ? AND dt = ?")) {
                ps.setLong(1, 1);
                ps.setDate(2, java.sql.Date.valueOf("2018-03-05"));
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "one row");
                    check(rs.getString(1).equals("acme"), "customer " + rs.getString(1));
                    check(rs.getBigDecimal(2).compareTo(new java.math.BigDecimal("10.50")) == 0, "total " + rs.getBigDecimal(2));
                    check(!rs.next(), "only one row");
                }
            }
            System.out.println("ok");
        }
    }
}
