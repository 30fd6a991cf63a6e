-- mysql-enc-point-select.lua: sysbench 1.0 custom workload for
-- bench/mysql-encrypted.sh. One event is either a point select by email
-- (--workload=select) or the insert of one new row (--workload=insert), on
-- --table. With --mode=prepared (the default) it uses server-side prepared
-- statements: the values travel as bound parameters, the way drivers send
-- them; with --mode=simple each statement is a text-protocol query with the
-- values as literals.
--
--   sysbench bench/mysql-enc-point-select.lua --mysql-host=... --table=users_enc --rows=10000 run
--
-- The table is (id, name, email, ssn, salary); email holds the row number
-- as text, so the same script runs on the encrypted and the plaintext table.

sysbench.cmdline.options = {
  table = {"Table to query", "users_enc"},
  rows = {"Number of seeded rows (emails 1..rows)", 10000},
  workload = {"select or insert", "select"},
  mode = {"prepared (bound parameters) or simple (text-protocol literals)", "prepared"},
}

function thread_init()
  drv = sysbench.sql.driver()
  con = drv:connect()
  local t = sysbench.opt.table
  local w = sysbench.opt.workload
  if w ~= "insert" and w ~= "select" then
    error("unknown --workload " .. w)
  end
  seq = 0
  if sysbench.opt.mode == "simple" then
    return
  elseif sysbench.opt.mode ~= "prepared" then
    error("unknown --mode " .. sysbench.opt.mode)
  end
  if w == "insert" then
    stmt = con:prepare("INSERT INTO " .. t .. " (name, email, ssn, salary) VALUES (?, ?, ?, ?)")
    p_name = stmt:bind_create(sysbench.sql.type.VARCHAR, 64)
    p_email = stmt:bind_create(sysbench.sql.type.VARCHAR, 64)
    p_ssn = stmt:bind_create(sysbench.sql.type.VARCHAR, 64)
    p_salary = stmt:bind_create(sysbench.sql.type.BIGINT)
    stmt:bind_param(p_name, p_email, p_ssn, p_salary)
  else
    stmt = con:prepare("SELECT id, name, email, ssn, salary FROM " .. t .. " WHERE email = ?")
    p_email = stmt:bind_create(sysbench.sql.type.VARCHAR, 64)
    stmt:bind_param(p_email)
  end
end

-- next_email: for insert, an email unique across threads and runs of one
-- process (thread id, then a counter); for select, a seeded row's.
function next_email()
  if sysbench.opt.workload == "insert" then
    seq = seq + 1
    return string.format("t%d-%d-%d", sysbench.tid, os.time(), seq)
  end
  return tostring(sysbench.rand.uniform(1, sysbench.opt.rows))
end

function event()
  local email = next_email()
  if sysbench.opt.mode == "simple" then
    local t = sysbench.opt.table
    if sysbench.opt.workload == "insert" then
      con:query(string.format("INSERT INTO %s (name, email, ssn, salary) VALUES ('new user', '%s', '999-45-6789', %d)",
        t, email, seq))
    else
      con:query(string.format("SELECT id, name, email, ssn, salary FROM %s WHERE email = '%s'", t, email))
    end
    return
  end
  if sysbench.opt.workload == "insert" then
    p_name:set("new user")
    p_email:set(email)
    p_ssn:set("999-45-6789")
    p_salary:set(seq)
  else
    p_email:set(email)
  end
  stmt:execute()
end

function thread_done()
  if stmt then
    stmt:close()
  end
  con:disconnect()
end
