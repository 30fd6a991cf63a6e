-- mysql-enc-point-select.lua: sysbench 1.0 custom workload for
-- bench/mysql-encrypted.sh. One event is either a point select by email
-- (--workload=select) or the insert of one new row (--workload=insert), on
-- --table, with server-side prepared statements (sysbench's default
-- --db-ps-mode=auto): the values travel as bound parameters, the way
-- drivers send them.
--
--   sysbench bench/mysql-enc-point-select.lua --mysql-host=... --table=users_enc --rows=10000 run
--
-- The table is (id, name, email, ssn, salary); email holds the row number
-- as text, so the same script runs on the encrypted and the plaintext table.

sysbench.cmdline.options = {
  table = {"Table to query", "users_enc"},
  rows = {"Number of seeded rows (emails 1..rows)", 10000},
  workload = {"select or insert", "select"},
}

function thread_init()
  drv = sysbench.sql.driver()
  con = drv:connect()
  local t = sysbench.opt.table
  if sysbench.opt.workload == "insert" then
    stmt = con:prepare("INSERT INTO " .. t .. " (name, email, ssn, salary) VALUES (?, ?, ?, ?)")
    p_name = stmt:bind_create(sysbench.sql.type.VARCHAR, 64)
    p_email = stmt:bind_create(sysbench.sql.type.VARCHAR, 64)
    p_ssn = stmt:bind_create(sysbench.sql.type.VARCHAR, 64)
    p_salary = stmt:bind_create(sysbench.sql.type.BIGINT)
    stmt:bind_param(p_name, p_email, p_ssn, p_salary)
    seq = 0
  elseif sysbench.opt.workload == "select" then
    stmt = con:prepare("SELECT id, name, email, ssn, salary FROM " .. t .. " WHERE email = ?")
    p_email = stmt:bind_create(sysbench.sql.type.VARCHAR, 64)
    stmt:bind_param(p_email)
  else
    error("unknown --workload " .. sysbench.opt.workload)
  end
end

function event()
  if sysbench.opt.workload == "insert" then
    seq = seq + 1
    -- unique across threads and runs of one process: thread id, then a counter
    local n = string.format("t%d-%d-%d", sysbench.tid, os.time(), seq)
    p_name:set("new user")
    p_email:set(n)
    p_ssn:set("999-45-6789")
    p_salary:set(seq)
  else
    p_email:set(tostring(sysbench.rand.uniform(1, sysbench.opt.rows)))
  end
  stmt:execute()
end

function thread_done()
  stmt:close()
  con:disconnect()
end
