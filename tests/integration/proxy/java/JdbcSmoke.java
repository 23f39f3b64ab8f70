// A JDBC client through vaultwire (run by test_jdbc.py with the single-file source
// launcher): the Vault token as password, a simple and an extended-protocol query,
// and a cancel, which pgjdbc sends as a plaintext CancelRequest on a new connection.
// The token comes from the VW_TOKEN environment variable, never from argv.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public class JdbcSmoke {
  public static void main(String[] args) throws Exception {
    String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/defaultdb";
    Properties props = new Properties();
    props.setProperty("user", args.length > 1 ? args[1] : "crdb-role");
    props.setProperty("password", System.getenv("VW_TOKEN"));
    props.setProperty("sslmode", "disable");
    try (Connection conn = DriverManager.getConnection(url, props)) {
      try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT session_user, current_user")) {
        rs.next();
        System.out.println("session_user=" + rs.getString(1));
        System.out.println("current_user=" + rs.getString(2));
      }
      try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int + ?::int")) {
        for (int i = 0; i < 10; i++) {  // past prepareThreshold: server-side prepared statements
          ps.setInt(1, i);
          ps.setInt(2, 40);
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            if (rs.getInt(1) != i + 40) throw new AssertionError("wrong sum " + rs.getInt(1));
          }
        }
        System.out.println("extended=ok");
      }
      try (Statement st = conn.createStatement()) {
        Thread canceller = new Thread(() -> {
          try {
            Thread.sleep(500);
            st.cancel();
          } catch (Exception e) {
            System.out.println("cancel failed: " + e);
          }
        });
        canceller.start();
        try {
          st.execute("SELECT pg_sleep(30)");
          System.out.println("cancel=not-cancelled");
        } catch (SQLException e) {
          System.out.println("cancel=" + e.getSQLState());
        }
        canceller.join();
      }
    } catch (SQLException e) {
      System.out.println("error=" + e.getSQLState() + " " + e.getMessage());
    }
  }
}
