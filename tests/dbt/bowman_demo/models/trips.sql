-- Raw trips, as a batch job would land them.
select value as trip_id,
       case when value % 3 = 0 then 'Detroit' when value % 3 = 1 then 'Ann Arbor' else 'Lansing' end as city,
       cast(value as double) * 1.25 as fare
from generate_series(1, 300)
